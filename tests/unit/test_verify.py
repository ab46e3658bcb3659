"""tarry.verify against the providers' own examples, and tarry.webhooks' pure parts.

The vectors come from the providers and their official SDKs, not from this code:
GitHub's documentation ("Validating webhook deliveries"), @octokit/webhooks-methods'
tests, Slack's "Verifying requests from Slack", and for Stripe (which publishes no
fixed example) headers built the way stripe-python's test helper ``generate_header``
builds them, plus one signature computed with ``openssl dgst -sha256 -hmac``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

import tarry
from tarry.verify import SignatureRejected
from tarry.webhooks import (
    EventNameError,
    EventTemplate,
    UnreadableBody,
    UnsupportedBody,
    Webhooks,
    _event_id,
    parse_body,
)

# -- GitHub ---------------------------------------------------------------------------------

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# @octokit/webhooks-methods test/verify.test.ts: JSON.stringify({foo: "bar"}, null, 2) + "\n"
OCTOKIT_SECRET = "mysecret"
OCTOKIT_BODY = b'{\n  "foo": "bar"\n}\n'
OCTOKIT_SIGNATURE = "sha256=e3eccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f"


def test_github_accepts_its_documented_example() -> None:
    verifier = tarry.verify.github(GITHUB_SECRET)
    verifier.verify(GITHUB_BODY, {"X-Hub-Signature-256": GITHUB_SIGNATURE}, now=0)
    verifier.verify(GITHUB_BODY, {"x-hub-signature-256": GITHUB_SIGNATURE}, now=0)  # any case
    assert verifier.sign(GITHUB_BODY, now=0) == {"X-Hub-Signature-256": GITHUB_SIGNATURE}


def test_github_accepts_octokits_example_and_falls_back_to_a_second_secret() -> None:
    tarry.verify.github(OCTOKIT_SECRET).verify(
        OCTOKIT_BODY, {"X-Hub-Signature-256": OCTOKIT_SIGNATURE}, now=0
    )
    rotated = tarry.verify.github(["new-secret", OCTOKIT_SECRET])
    rotated.verify(OCTOKIT_BODY, {"X-Hub-Signature-256": OCTOKIT_SIGNATURE}, now=0)


@pytest.mark.parametrize(
    ("secret", "body", "headers", "reason"),
    [
        (GITHUB_SECRET, GITHUB_BODY + b" ", {"X-Hub-Signature-256": GITHUB_SIGNATURE},
         "signature mismatch"),
        ("It's a secret to everybody", GITHUB_BODY, {"X-Hub-Signature-256": GITHUB_SIGNATURE},
         "signature mismatch"),
        (GITHUB_SECRET, GITHUB_BODY, {}, "missing header X-Hub-Signature-256"),
        (GITHUB_SECRET, GITHUB_BODY, {"X-Hub-Signature-256": GITHUB_SIGNATURE[7:]},
         "signature mismatch"),  # no "sha256=" prefix
        (GITHUB_SECRET, GITHUB_BODY, {"X-Hub-Signature-256": "sha256=xyz"}, "signature mismatch"),
        (GITHUB_SECRET, GITHUB_BODY, {"X-Hub-Signature": "sha1=abc"},
         "missing header X-Hub-Signature-256"),  # the SHA-1 header is not accepted
    ],
)  # fmt: skip
def test_github_rejects(secret: str, body: bytes, headers: dict[str, str], reason: str) -> None:
    with pytest.raises(SignatureRejected) as caught:
        tarry.verify.github(secret).verify(body, headers, now=0)
    assert str(caught.value) == reason


def test_github_delivery_id_is_its_delivery_header() -> None:
    verifier = tarry.verify.github(GITHUB_SECRET)
    headers = {"X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
    assert verifier.delivery_id(GITHUB_BODY, headers, {}) == headers["X-GitHub-Delivery"]
    assert verifier.delivery_id(GITHUB_BODY, {}, {}) is None


# -- Slack ----------------------------------------------------------------------------------

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = 1531420618
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands"
    b"%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SLACK_HEADERS = {
    "X-Slack-Signature": SLACK_SIGNATURE,
    "X-Slack-Request-Timestamp": str(SLACK_TIMESTAMP),
}


def test_slack_accepts_its_documented_example_inside_five_minutes() -> None:
    verifier = tarry.verify.slack(SLACK_SECRET)
    for now in (SLACK_TIMESTAMP, SLACK_TIMESTAMP + 300, SLACK_TIMESTAMP - 300):
        verifier.verify(SLACK_BODY, SLACK_HEADERS, now=now)
    assert verifier.sign(SLACK_BODY, now=SLACK_TIMESTAMP) == SLACK_HEADERS


@pytest.mark.parametrize(
    ("change", "now", "reason"),
    [
        ({}, SLACK_TIMESTAMP + 301, "timestamp outside the window"),
        ({}, SLACK_TIMESTAMP - 301, "timestamp outside the window"),
        ({"X-Slack-Request-Timestamp": str(SLACK_TIMESTAMP + 1)}, SLACK_TIMESTAMP,
         "signature mismatch"),  # the timestamp is signed too
        ({"X-Slack-Signature": None}, SLACK_TIMESTAMP, "missing header X-Slack-Signature"),
        ({"X-Slack-Request-Timestamp": None}, SLACK_TIMESTAMP,
         "missing header X-Slack-Request-Timestamp"),
        ({"X-Slack-Request-Timestamp": "soon"}, SLACK_TIMESTAMP,
         "malformed header X-Slack-Request-Timestamp: the timestamp is not Unix seconds"),
        ({"X-Slack-Signature": "v1=" + SLACK_SIGNATURE[3:]}, SLACK_TIMESTAMP,
         "signature mismatch"),
    ],
)  # fmt: skip
def test_slack_rejects(change: dict[str, str | None], now: int, reason: str) -> None:
    headers = {k: v for k, v in {**SLACK_HEADERS, **change}.items() if v is not None}
    with pytest.raises(SignatureRejected) as caught:
        tarry.verify.slack(SLACK_SECRET).verify(SLACK_BODY, headers, now=now)
    assert str(caught.value) == reason


def test_slack_dedupes_on_event_id_and_answers_url_verification() -> None:
    verifier = tarry.verify.slack(SLACK_SECRET)
    assert verifier.delivery_id(b"", {}, {"event_id": "Ev0PV52K21"}) == "Ev0PV52K21"
    assert verifier.delivery_id(b"", {}, {"command": "/x"}) is None  # the body's digest
    challenge = {
        "token": "t",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY",
        "type": "url_verification",
    }
    assert verifier.handshake(challenge) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY"}
    assert verifier.handshake({"type": "event_callback"}) is None


# -- Stripe ---------------------------------------------------------------------------------

STRIPE_SECRET = "whsec_test_secret"
# stripe-python tests/test_webhook.py's DUMMY_WEBHOOK_PAYLOAD
STRIPE_BODY = b"""{
  "id": "evt_test_webhook",
  "object": "event",
  "data": { "object": { "id": "rdr_123", "object": "terminal.reader" } }
}"""
NOW = 1_900_000_000


def generate_header(
    *,
    timestamp: int = NOW,
    payload: bytes = STRIPE_BODY,
    secret: str = STRIPE_SECRET,
    scheme: str = "v1",
    signature: str | None = None,
) -> str:
    """stripe-python's test helper: ``t=<timestamp>,<scheme>=<hmac of "t.payload">``."""
    if signature is None:
        payload_to_sign = b"%d.%s" % (timestamp, payload)
        signature = hmac.new(secret.encode(), payload_to_sign, hashlib.sha256).hexdigest()
    return f"t={timestamp},{scheme}={signature}"


def test_stripe_accepts_a_header_made_as_stripe_python_makes_it() -> None:
    verifier = tarry.verify.stripe(STRIPE_SECRET, tolerance=10)
    verifier.verify(STRIPE_BODY, {"Stripe-Signature": generate_header()}, now=NOW)
    # one good v1 among others, and a v0 scheme beside it, as Stripe sends while rolling
    header = generate_header() + ",v1=bad_signature,v0=" + "0" * 64
    verifier.verify(STRIPE_BODY, {"Stripe-Signature": header}, now=NOW + 10)
    assert verifier.sign(STRIPE_BODY, now=NOW) == {"Stripe-Signature": generate_header()}


def test_stripe_accepts_a_signature_computed_with_openssl() -> None:
    # printf '%s' '1700000000.{"id":...}' | openssl dgst -sha256 -hmac whsec_test_secret
    body = b'{"id":"evt_test_webhook","object":"event","type":"invoice.paid"}'
    digest = "92a67d03f3996371aee723f680b97033696bcd5bb8a1826c465e55a4d569d2c1"
    headers = {"stripe-signature": f"t=1700000000,v1={digest}"}
    tarry.verify.stripe(STRIPE_SECRET).verify(body, headers, now=1700000000 + 299)
    assert tarry.verify.stripe(STRIPE_SECRET).delivery_id(body, headers, {"id": "evt_1"}) == "evt_1"


@pytest.mark.parametrize(
    ("header", "now", "reason"),
    [
        (None, NOW, "missing header Stripe-Signature"),
        ("i'm not even a real signature header", NOW,
         "malformed header Stripe-Signature: expected t=<timestamp>,v1=<signature>"),
        (generate_header(scheme="v0"), NOW,
         "malformed header Stripe-Signature: expected t=<timestamp>,v1=<signature>"),
        (generate_header(signature="bad_signature"), NOW, "signature mismatch"),
        (generate_header(secret="whsec_other"), NOW, "signature mismatch"),
        (generate_header(timestamp=NOW - 15), NOW, "timestamp outside the window"),
        (generate_header(timestamp=NOW + 15), NOW, "timestamp outside the window"),
        (generate_header().replace(f"t={NOW}", f"t={NOW + 1}"), NOW, "signature mismatch"),
    ],
)  # fmt: skip
def test_stripe_rejects(header: str | None, now: int, reason: str) -> None:
    headers = {} if header is None else {"Stripe-Signature": header}
    with pytest.raises(SignatureRejected) as caught:
        tarry.verify.stripe(STRIPE_SECRET, tolerance=10).verify(STRIPE_BODY, headers, now=now)
    assert str(caught.value) == reason


def test_a_tampered_body_fails_whatever_the_provider() -> None:
    for verifier in (
        tarry.verify.stripe(STRIPE_SECRET),
        tarry.verify.github(STRIPE_SECRET),
        tarry.verify.slack(STRIPE_SECRET),
        tarry.verify.hmac_sha256(header="X-Sig", secret=STRIPE_SECRET, timestamp_header="X-T"),
    ):
        headers = verifier.sign(b'{"amount": 100}', now=NOW)
        verifier.verify(b'{"amount": 100}', headers, now=NOW)
        with pytest.raises(SignatureRejected, match="signature mismatch"):
            verifier.verify(b'{"amount": 900}', headers, now=NOW)


# -- the generic HMAC-SHA256 ----------------------------------------------------------------


def test_generic_hmac_in_base64_without_prefix() -> None:
    # printf '%s' '{"order":1}' | openssl dgst -sha256 -hmac shpss_secret -binary | base64
    verifier = tarry.verify.hmac_sha256(
        header="X-Shopify-Hmac-Sha256", secret="shpss_secret", prefix="", encoding="base64",
        id_header="X-Shopify-Webhook-Id",
    )  # fmt: skip
    headers = {
        "X-Shopify-Hmac-Sha256": "yDVNpmxQCNEQC9dKCR/hodz9eTb2Z3NwQa93joRgIFc=",
        "X-Shopify-Webhook-Id": "b54557e4",
    }
    verifier.verify(b'{"order":1}', headers, now=0)
    assert verifier.delivery_id(b"", headers, {}) == "b54557e4"
    assert verifier.delivery_id(b"", {}, {}) is None
    with pytest.raises(SignatureRejected, match="signature mismatch"):
        verifier.verify(b'{"order":1}', {"X-Shopify-Hmac-Sha256": "not base64!"}, now=0)


def test_generic_hmac_with_a_signed_timestamp() -> None:
    # printf '%s' '1700000000.{"order":1}' | openssl dgst -sha256 -hmac generic-secret
    verifier = tarry.verify.hmac_sha256(
        header="X-Signature", secret="generic-secret", timestamp_header="X-Timestamp",
        tolerance="1m",
    )  # fmt: skip
    digest = "98f8ded2bd2947b54d5cc49c173d7380e3a37df87de60d67c6705e9a8bba1c23"
    headers = {"X-Signature": f"sha256={digest}", "X-Timestamp": "1700000000"}
    verifier.verify(b'{"order":1}', headers, now=1700000060)
    with pytest.raises(SignatureRejected, match="timestamp outside the window"):
        verifier.verify(b'{"order":1}', headers, now=1700000061)
    with pytest.raises(SignatureRejected, match="missing header X-Timestamp"):
        verifier.verify(b'{"order":1}', {"X-Signature": f"sha256={digest}"}, now=1700000000)
    assert verifier.sign(b'{"order":1}', now=1700000000) == headers


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: tarry.verify.stripe(""), "must be a non-empty string"),
        (lambda: tarry.verify.github([]), "must be a non-empty string, or a list"),
        (lambda: tarry.verify.github(["ok", 3]), "got int"),  # type: ignore[list-item]
        (lambda: tarry.verify.slack("s", tolerance="5M"), "tolerance: invalid duration"),
        (lambda: tarry.verify.stripe("s", tolerance=0), "positive duration"),
        (lambda: tarry.verify.hmac_sha256(header="X Sig", secret="s"), "HTTP header name"),
        (lambda: tarry.verify.hmac_sha256(header="X", secret="s", encoding="hexa"),  # type: ignore[arg-type]
         "'hex' or 'base64'"),
    ],
)  # fmt: skip
def test_bad_options_are_config_errors(make: Any, message: str) -> None:
    with pytest.raises(tarry.ConfigError, match=message):
        make()


def test_a_secret_never_shows_in_a_repr() -> None:
    for verifier in (
        tarry.verify.stripe("whsec_topsecret"),
        tarry.verify.github("whsec_topsecret"),
        tarry.verify.slack("whsec_topsecret"),
        tarry.verify.hmac_sha256(header="X-Sig", secret="whsec_topsecret"),
    ):
        assert "topsecret" not in repr(verifier)


# -- tarry.webhooks: templates, bodies, ids -------------------------------------------------


def test_event_templates_read_the_body_and_the_headers() -> None:
    template = EventTemplate.parse("github/{{ headers.X-GitHub-Event }}.{{action}}")
    name = template.render({"action": "opened"}, {"x-github-event": "pull_request"})
    assert name == "github/pull_request.opened"
    nested = EventTemplate.parse("stripe/{{data.object.object}}/{{livemode}}/{{n}}")
    body = {"data": {"object": {"object": "charge"}}, "livemode": False, "n": 3}
    assert nested.render(body, {}) == "stripe/charge/false/3"
    assert EventTemplate.parse("shop/order").render({}, {}) == "shop/order"


@pytest.mark.parametrize(
    ("template", "body", "headers", "message"),
    [
        ("stripe/{{type}}", {"id": "evt_1"}, {}, "needs the body's 'type'"),
        ("stripe/{{type}}", ["not", "an object"], {}, "needs the body's 'type'"),
        ("stripe/{{data}}", {"data": {"a": 1}}, {}, "is a dict, not a string"),
        ("gh/{{headers.X-GitHub-Event}}", {}, {}, "needs header X-GitHub-Event"),
        ("x/{{t}}", {"t": "a" * 300}, {}, "made a bad name"),
    ],
)
def test_a_template_that_cannot_be_filled_names_what_is_missing(
    template: str, body: Any, headers: dict[str, str], message: str
) -> None:
    with pytest.raises(EventNameError, match=message):
        EventTemplate.parse(template).render(body, headers)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("", "must be an event name or a template"),
        ("stripe/{{}}", "must hold a dotted path"),
        ("stripe/{{a b}}", "must hold a dotted path"),
        ("stripe/{{type", "unclosed"),
        ("x" * 300, "cannot make an event name"),
    ],
)
def test_bad_templates_are_refused_when_registered(template: str, message: str) -> None:
    with pytest.raises(tarry.ConfigError, match=message):
        Webhooks().add("shop", verify=tarry.verify.github("s"), event=template)


def test_bad_registrations_are_config_errors() -> None:
    hooks = Webhooks()
    hooks.add("stripe", verify=tarry.verify.stripe("s"), event="stripe/{{type}}")
    with pytest.raises(tarry.ConfigError, match="already registered"):
        hooks.add("stripe", verify=tarry.verify.stripe("s"), event="stripe/{{type}}")
    with pytest.raises(tarry.ConfigError, match="part of the URL"):
        hooks.add("a/b", verify=tarry.verify.stripe("s"), event="x")
    with pytest.raises(ValueError, match="non-empty string"):
        hooks.add("", verify=tarry.verify.stripe("s"), event="x")
    with pytest.raises(tarry.ConfigError, match="never received unverified"):
        hooks.add("open", verify=None, event="x")  # type: ignore[arg-type]
    with pytest.raises(tarry.ConfigError, match="max_body"):
        hooks.add("big", verify=tarry.verify.github("s"), event="x", max_body=0)
    assert list(hooks) == ["stripe"]


def test_bodies_parse_as_json_or_forms() -> None:
    assert parse_body(b'{"a": 1}', "application/json; charset=utf-8") == {"a": 1}
    assert parse_body(b'{"a": 1}', "") == {"a": 1}
    assert parse_body(b'{"a": 1}', "text/plain") == {"a": 1}  # a sender that mislabels JSON
    slash = parse_body(SLACK_BODY, "application/x-www-form-urlencoded")
    assert slash["command"] == "/webhook-collect" and slash["text"] == ""
    assert parse_body(b"a=1&a=2&b=", "application/x-www-form-urlencoded") == {
        "a": ["1", "2"],
        "b": "",
    }
    # GitHub's form deliveries and Slack's interactions: the JSON in `payload`
    form = b"payload=%7B%22type%22%3A%22block_actions%22%7D"
    assert parse_body(form, "application/x-www-form-urlencoded") == {"type": "block_actions"}
    with pytest.raises(UnreadableBody, match="not valid JSON"):
        parse_body(b"{nope", "application/json")
    with pytest.raises(UnreadableBody, match="not valid JSON"):
        parse_body(b'{"n": NaN}', "application/json")
    with pytest.raises(UnsupportedBody, match="JSON or a form"):
        parse_body(b"\x89PNG", "image/png")
    with pytest.raises(UnreadableBody, match="not a valid form"):
        parse_body(b"\xff\xfe", "application/x-www-form-urlencoded")


def test_event_ids_are_namespaced_by_source_and_fall_back_to_digests() -> None:
    assert _event_id("stripe", "evt_1", b"{}") == "stripe:evt_1"
    body_id = _event_id("slack", None, b"command=%2Fx")
    assert body_id == "slack:sha256-" + hashlib.sha256(b"command=%2Fx").hexdigest()
    long_id = _event_id("github", "x" * 300, b"")
    assert long_id == "github:sha256-" + hashlib.sha256(b"x" * 300).hexdigest()

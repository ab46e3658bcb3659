"""Webhook signatures checked as each provider documents them, on the raw body.

``tarry.verify.stripe(secret)``, ``github(secret)``, ``slack(signing_secret)`` and
``hmac_sha256(header=..., secret=...)`` make the verifier ``app.webhook`` takes.
A verifier answers two questions about a delivery before anything is parsed or
stored:

* Is it authentic? The HMAC-SHA256 of the exact bytes received (never of a
  re-encoded body, whose spacing and key order would differ), under the
  endpoint's secret, compared in constant time; and, where the provider signs a
  timestamp, is that timestamp inside the window around the App's clock, so that
  a captured delivery cannot be replayed later (and a test moves the clock
  rather than waiting).
* Which delivery is it? The id a provider's retry carries again, so that the
  retry deduplicates instead of starting a second run.

Every verifier takes one secret or several: each is tried, so a secret can be
rotated without a moment where deliveries signed with the other one fail (as
octokit's ``verifyWithFallback`` does). A secret never appears in a repr or an
error.

A rejection says only what a sender needs to mend its set-up ("missing header
X-Hub-Signature-256", "signature mismatch", "timestamp outside the window"),
never the expected signature nor how close a guess came.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

from .durations import Duration, parse_duration
from .errors import ConfigError, TarryError

__all__ = [
    "GitHubVerifier",
    "HmacSHA256Verifier",
    "SignatureRejected",
    "SlackVerifier",
    "StripeVerifier",
    "Verifier",
    "github",
    "hmac_sha256",
    "slack",
    "stripe",
]

Secret: TypeAlias = str | bytes
Secrets: TypeAlias = Secret | Sequence[Secret]

_TIMESTAMP = re.compile(r"\d{1,15}")
"""Unix seconds as providers send them: digits only (``int()`` would also take
" 12", "+12" and "1_2", none of which a provider signs)."""


class SignatureRejected(TarryError):
    """The webhook delivery did not verify (signature, timestamp or header); nothing
    was stored."""


class Verifier(ABC):
    """Checks one provider's signature; ``app.webhook(name, verify=...)`` takes one.

    Header names are matched whatever their case.
    """

    provider: str = "webhook"

    def __init__(self, secrets: Secrets) -> None:
        self._keys = _keys(secrets, self.provider)

    def verify(self, body: bytes, headers: Mapping[str, str], *, now: float) -> None:
        """Return if ``body`` with ``headers`` is authentic at ``now`` (epoch seconds,
        the App's clock), else raise ``SignatureRejected`` saying what was wrong."""
        self._check(bytes(body), _lower(headers), now)

    def delivery_id(self, body: bytes, headers: Mapping[str, str], payload: Any) -> str | None:
        """The id a retry of this delivery carries again, or None: then the digest of
        the body stands in (a retry resends the same bytes)."""
        return None

    def handshake(self, payload: Any) -> dict[str, Any] | None:
        """The answer the provider expects instead of an event (Slack's
        ``url_verification``), or None for a delivery that becomes an event."""
        return None

    @abstractmethod
    def sign(self, body: bytes, *, now: float) -> dict[str, str]:
        """The headers the provider would send with ``body`` at ``now``: to deliver
        a signed webhook in a test without the provider."""

    @abstractmethod
    def _check(self, body: bytes, headers: Mapping[str, str], now: float) -> None: ...

    def _digest(self, message: bytes, key: bytes | None = None) -> bytes:
        return hmac.new(self._keys[0] if key is None else key, message, hashlib.sha256).digest()

    def _require_match(self, message: bytes, given: Iterable[bytes | None]) -> None:
        """Raise unless one of the ``given`` digests is the HMAC of ``message`` under one
        of the keys. Every pair is compared, in constant time, so the time taken says
        nothing about which one came close."""
        expected = [self._digest(message, key) for key in self._keys]
        found = False
        for candidate in given:
            for digest in expected:
                # compare_digest of unequal lengths returns at once, but the length of a
                # SHA-256 digest is no secret.
                found |= candidate is not None and hmac.compare_digest(candidate, digest)
        if not found:
            raise SignatureRejected("signature mismatch")


class StripeVerifier(Verifier):
    """``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`` over ``"{t}.{body}"``.

    As stripe-python's ``WebhookSignature.verify_header``: any ``v1`` may match
    (Stripe sends one per active secret while one is rolled), other schemes
    (``v0``) are ignored; then the timestamp must be within ``tolerance`` of now.
    The delivery id is the event's ``id`` (``evt_...``), which a retry repeats.
    """

    provider = "stripe"
    header = "Stripe-Signature"

    def __init__(self, secrets: Secrets, tolerance: Duration = "5m") -> None:
        super().__init__(secrets)
        self.tolerance = _tolerance(tolerance)

    def __repr__(self) -> str:
        return f"tarry.verify.stripe(tolerance={self.tolerance:g}s)"

    def _check(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        timestamp, signatures = _stripe_header(_required(headers, self.header))
        self._require_match(f"{timestamp}.".encode() + body, map(_from_hex, signatures))
        _within(timestamp, now, self.tolerance)

    def delivery_id(self, body: bytes, headers: Mapping[str, str], payload: Any) -> str | None:
        return _field(payload, "id")

    def sign(self, body: bytes, *, now: float) -> dict[str, str]:
        timestamp = int(now)
        digest = self._digest(f"{timestamp}.".encode() + body).hex()
        return {self.header: f"t={timestamp},v1={digest}"}


class GitHubVerifier(Verifier):
    """``X-Hub-Signature-256: sha256=<hex>`` over the body, as @octokit/webhooks-methods.

    GitHub signs no timestamp; its ``X-GitHub-Delivery`` id, repeated by a
    redelivery, deduplicates.
    """

    provider = "github"
    header = "X-Hub-Signature-256"
    delivery_header = "X-GitHub-Delivery"

    def __repr__(self) -> str:
        return "tarry.verify.github()"

    def _check(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        value = _required(headers, self.header)
        self._require_match(body, [_from_hex(_without_prefix(value, "sha256="))])

    def delivery_id(self, body: bytes, headers: Mapping[str, str], payload: Any) -> str | None:
        return _lower(headers).get(self.delivery_header.lower()) or None

    def sign(self, body: bytes, *, now: float) -> dict[str, str]:
        return {self.header: "sha256=" + self._digest(body).hex()}


class SlackVerifier(Verifier):
    """``X-Slack-Signature: v0=<hex>`` over ``"v0:{X-Slack-Request-Timestamp}:{body}"``.

    As slack-sdk's ``SignatureVerifier``: the timestamp within five minutes of now.
    A retry (``X-Slack-Retry-Num``) resends the same body: the Events API's
    ``event_id`` deduplicates it, else the body's digest (slash commands,
    interactions). ``url_verification`` is answered with its ``challenge``.
    """

    provider = "slack"
    header = "X-Slack-Signature"
    timestamp_header = "X-Slack-Request-Timestamp"

    def __init__(self, secrets: Secrets, tolerance: Duration = "5m") -> None:
        super().__init__(secrets)
        self.tolerance = _tolerance(tolerance)

    def __repr__(self) -> str:
        return f"tarry.verify.slack(tolerance={self.tolerance:g}s)"

    def _check(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        value = _required(headers, self.header)
        timestamp = _timestamp(_required(headers, self.timestamp_header), self.timestamp_header)
        signed = f"v0:{timestamp}:".encode() + body
        self._require_match(signed, [_from_hex(_without_prefix(value, "v0="))])
        _within(timestamp, now, self.tolerance)

    def delivery_id(self, body: bytes, headers: Mapping[str, str], payload: Any) -> str | None:
        return _field(payload, "event_id")

    def handshake(self, payload: Any) -> dict[str, Any] | None:
        if isinstance(payload, dict) and payload.get("type") == "url_verification":
            challenge = payload.get("challenge")
            if isinstance(challenge, str):
                return {"challenge": challenge}
        return None

    def sign(self, body: bytes, *, now: float) -> dict[str, str]:
        timestamp = int(now)
        digest = self._digest(f"v0:{timestamp}:".encode() + body).hex()
        return {self.header: f"v0={digest}", self.timestamp_header: str(timestamp)}


class HmacSHA256Verifier(Verifier):
    """Any provider that puts an HMAC-SHA256 in one header: of the body, or with
    ``timestamp_header`` of ``"{timestamp}.{body}"`` (the timestamp in Unix seconds,
    checked against ``tolerance``). The digest is ``hex`` or ``base64`` after
    ``prefix``; ``id_header`` names the header that carries the delivery id."""

    provider = "hmac_sha256"

    def __init__(
        self,
        secrets: Secrets,
        *,
        header: str,
        prefix: str = "sha256=",
        encoding: Literal["hex", "base64"] = "hex",
        timestamp_header: str | None = None,
        tolerance: Duration = "5m",
        id_header: str | None = None,
    ) -> None:
        super().__init__(secrets)
        self.header = _header_name(header, "header")
        if not isinstance(prefix, str):
            raise ConfigError(f"prefix must be a string such as 'sha256=' or '', got {prefix!r}")
        self.prefix = prefix
        if encoding not in ("hex", "base64"):
            raise ConfigError(f"encoding must be 'hex' or 'base64', got {encoding!r}")
        self.encoding = encoding
        self.timestamp_header = (
            None if timestamp_header is None else _header_name(timestamp_header, "timestamp_header")
        )
        self.tolerance = _tolerance(tolerance)
        self.id_header = None if id_header is None else _header_name(id_header, "id_header")

    def __repr__(self) -> str:
        return f"tarry.verify.hmac_sha256(header={self.header!r})"

    def _signed(self, body: bytes, timestamp: int | None) -> bytes:
        return body if timestamp is None else f"{timestamp}.".encode() + body

    def _check(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        value = _without_prefix(_required(headers, self.header), self.prefix)
        timestamp = None
        if self.timestamp_header is not None:
            raw = _required(headers, self.timestamp_header)
            timestamp = _timestamp(raw, self.timestamp_header)
        decode = _from_hex if self.encoding == "hex" else _from_base64
        self._require_match(self._signed(body, timestamp), [decode(value)])
        if timestamp is not None:
            _within(timestamp, now, self.tolerance)

    def delivery_id(self, body: bytes, headers: Mapping[str, str], payload: Any) -> str | None:
        if self.id_header is None:
            return None
        return _lower(headers).get(self.id_header.lower()) or None

    def sign(self, body: bytes, *, now: float) -> dict[str, str]:
        timestamp = None if self.timestamp_header is None else int(now)
        digest = self._digest(self._signed(body, timestamp))
        text = digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode()
        headers = {self.header: self.prefix + text}
        if self.timestamp_header is not None:
            headers[self.timestamp_header] = str(timestamp)
        return headers


# -- the public constructors ---------------------------------------------------------------


def stripe(secret: Secrets, *, tolerance: Duration = "5m") -> StripeVerifier:
    """Stripe's ``Stripe-Signature``; ``secret`` is the endpoint's ``whsec_...``
    signing secret (or several, while one is rolled)."""
    return StripeVerifier(secret, tolerance)


def github(secret: Secrets) -> GitHubVerifier:
    """GitHub's ``X-Hub-Signature-256``; ``secret`` is the webhook's secret."""
    return GitHubVerifier(secret)


def slack(signing_secret: Secrets, *, tolerance: Duration = "5m") -> SlackVerifier:
    """Slack's ``X-Slack-Signature``; ``signing_secret`` is the app's Signing Secret."""
    return SlackVerifier(signing_secret, tolerance)


def hmac_sha256(
    *,
    header: str,
    secret: Secrets,
    prefix: str = "sha256=",
    encoding: Literal["hex", "base64"] = "hex",
    timestamp_header: str | None = None,
    tolerance: Duration = "5m",
    id_header: str | None = None,
) -> HmacSHA256Verifier:
    """An HMAC-SHA256 of the body in ``header`` (see ``HmacSHA256Verifier``)."""
    return HmacSHA256Verifier(
        secret, header=header, prefix=prefix, encoding=encoding,
        timestamp_header=timestamp_header, tolerance=tolerance, id_header=id_header,
    )  # fmt: skip


# -- helpers -------------------------------------------------------------------------------


def _keys(secrets: object, provider: str) -> tuple[bytes, ...]:
    given = [secrets] if isinstance(secrets, str | bytes) else secrets
    if not isinstance(given, Sequence) or not given:
        raise ConfigError(
            f"the {provider} webhook secret must be a non-empty string, or a list of them "
            f"while one is rotated; got {type(secrets).__name__}"
        )
    keys = []
    for secret in given:
        if not isinstance(secret, str | bytes) or not secret:
            # The value itself is never shown: it may be most of a real secret.
            raise ConfigError(
                f"each {provider} webhook secret must be a non-empty string, got "
                f"{'an empty one' if isinstance(secret, str | bytes) else type(secret).__name__}"
            )
        keys.append(secret.encode() if isinstance(secret, str) else bytes(secret))
    return tuple(keys)


def _tolerance(value: Duration) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"tolerance: {exc}") from None
    if seconds <= 0:
        raise ConfigError(f"tolerance must be a positive duration such as '5m', got {value!r}")
    return seconds


def _header_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", value):
        raise ConfigError(
            f"{what} must be an HTTP header name such as 'X-Signature', got {value!r}"
        )
    return value


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def _required(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if not value:
        raise SignatureRejected(f"missing header {name}")
    return value


def _without_prefix(value: str, prefix: str) -> str | None:
    return value[len(prefix) :] if value.startswith(prefix) else None


def _from_hex(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _from_base64(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _timestamp(value: str, header: str) -> int:
    if not _TIMESTAMP.fullmatch(value):
        raise SignatureRejected(f"malformed header {header}: the timestamp is not Unix seconds")
    return int(value)


def _within(timestamp: int, now: float, tolerance: float) -> None:
    # Either way: a delivery dated in the future is as suspect as an old one.
    if abs(now - timestamp) > tolerance:
        raise SignatureRejected("timestamp outside the window")


def _stripe_header(value: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in value.split(","):
        key, _, part = item.strip().partition("=")
        if key == "t" and timestamp is None:
            timestamp = _timestamp(part, StripeVerifier.header)
        elif key == "v1":
            signatures.append(part)
    if timestamp is None or not signatures:
        raise SignatureRejected(
            f"malformed header {StripeVerifier.header}: expected t=<timestamp>,v1=<signature>"
        )
    return timestamp, signatures


def _field(payload: Any, name: str) -> str | None:
    value = payload.get(name) if isinstance(payload, dict) else None
    return value if isinstance(value, str) and value else None

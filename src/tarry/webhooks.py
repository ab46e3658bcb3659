"""Webhook sources: what ``app.webhook(...)`` registers, and a delivery made an event.

``app.webhook("stripe", verify=tarry.verify.stripe(secret), event="stripe/{{type}}")``
registers a source; ``tarry serve`` receives it at ``POST /api/v1/webhooks/stripe``
and hands the raw body and headers to :func:`receive`, which

1. checks the signature on the raw bytes (``tarry.verify``), before parsing them;
2. parses the body: JSON, or a form (Slack's slash commands), whose only field
   ``payload`` is itself parsed when it holds JSON (GitHub's form deliveries,
   Slack's interactions);
3. answers a provider's handshake (Slack's ``url_verification``) without an event;
4. names the event from the template, and gives it the id
   ``<webhook name>:<delivery id>``, so that a provider's retry is the same
   event and ``App.send_event`` ignores it (within the App's ``event_dedupe``);
5. sends the event, which starts and resumes runs as any event does.

Event names are templates rather than CEL: a name is a few fields pasted
together, which ``"stripe/{{type}}"`` shows at a glance and which is checked when
the source is registered; CEL here is for conditions, and ``on=tarry.trigger(...,
if_=...)`` still filters the events a webhook sends.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .errors import ConfigError, TarryError
from .expressions import resolve_path
from .names import MAX_NAME, check_name
from .verify import Verifier

if TYPE_CHECKING:
    from .app import App

__all__ = [
    "DEFAULT_MAX_BODY",
    "Accepted",
    "BodyTooLarge",
    "EventNameError",
    "EventTemplate",
    "Handshake",
    "UnreadableBody",
    "UnsupportedBody",
    "Webhook",
    "WebhookNotFound",
    "Webhooks",
    "receive",
]

DEFAULT_MAX_BODY = 1024 * 1024
"""The largest delivery a source accepts unless told: Stripe, Slack and most GitHub
events are far below it; a push of many commits can need ``max_body=``."""

MAX_WEBHOOK_NAME = 64
_WEBHOOK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_PATH = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
_HEADERS = "headers."


class WebhookNotFound(TarryError, LookupError):
    """No webhook source with that name is registered on this App."""


class BodyTooLarge(TarryError, ValueError):
    """The webhook delivery is over the source's ``max_body``."""


class UnsupportedBody(TarryError, ValueError):
    """The webhook delivery is neither JSON nor form-encoded."""


class UnreadableBody(TarryError, ValueError):
    """The webhook delivery says it is JSON or a form but does not parse as one."""


class EventNameError(TarryError, ValueError):
    """The event name template cannot be filled from this delivery."""


# -- the event name ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventTemplate:
    """``"stripe/{{type}}"``: literal text and ``{{path}}`` placeholders, each a dotted
    path into the parsed body (``{{data.object.status}}``) or, after ``headers.``, a
    request header (``{{headers.X-GitHub-Event}}``, any case)."""

    source: str
    parts: tuple[tuple[str, str | None], ...]
    """(literal text, the placeholder's path after it or None), in order."""

    @classmethod
    def parse(cls, source: object) -> EventTemplate:
        if not isinstance(source, str) or not source:
            raise ConfigError(
                f"event must be an event name or a template such as 'stripe/{{{{type}}}}', "
                f"got {source!r}"
            )
        parts: list[tuple[str, str | None]] = []
        at = 0
        for found in _PLACEHOLDER.finditer(source):
            path = found.group(1)
            if not _PATH.fullmatch(path):
                raise ConfigError(
                    f"event template {source!r}: {found.group(0)!r} must hold a dotted path "
                    "into the body such as {{type}}, or {{headers.<name>}}"
                )
            parts.append((source[at : found.start()], path))
            at = found.end()
        parts.append((source[at:], None))
        literal = "".join(text for text, _ in parts)
        if "{{" in literal or "}}" in literal:
            raise ConfigError(f"event template {source!r} has an unclosed {{{{ or a stray }}}}")
        try:  # the shortest name it can make must be one
            check_name("".join(text + ("" if path is None else "x") for text, path in parts), "x")
        except ValueError as exc:
            raise ConfigError(
                f"event template {source!r} cannot make an event name: {exc}"
            ) from None
        return cls(source, tuple(parts))

    def render(self, payload: Any, headers: Mapping[str, str]) -> str:
        """The event's name for this delivery (``headers`` with lower-case names)."""
        out: list[str] = []
        for text, path in self.parts:
            out.append(text)
            if path is not None:
                out.append(self._value(path, payload, headers))
        name = "".join(out)
        try:
            return check_name(name, "event name")
        except ValueError as exc:
            raise EventNameError(f"event template {self.source!r} made a bad name: {exc}") from None

    def _value(self, path: str, payload: Any, headers: Mapping[str, str]) -> str:
        if path.startswith(_HEADERS):
            header = headers.get(path[len(_HEADERS) :].lower())
            if header is None:
                raise EventNameError(
                    f"event template {self.source!r} needs header {path[len(_HEADERS) :]}, "
                    "which this delivery lacks"
                )
            return header
        found, value = resolve_path(payload, path) if isinstance(payload, dict) else (False, None)
        if not found:
            raise EventNameError(
                f"event template {self.source!r} needs the body's {path!r}, which this "
                "delivery lacks"
            )
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise EventNameError(
                f"event template {self.source!r}: the body's {path!r} is a "
                f"{type(value).__name__}, not a string or number"
            )
        return str(value)


# -- the registry --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Webhook:
    """One registered source."""

    name: str
    verifier: Verifier
    event: EventTemplate
    data: Callable[[Any], Any] | None
    max_body: int


class Webhooks(Mapping[str, Webhook]):
    """The App's webhook sources, by name (``app.webhooks``)."""

    def __init__(self) -> None:
        self._by_name: dict[str, Webhook] = {}

    def __getitem__(self, name: str) -> Webhook:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def add(
        self,
        name: str,
        *,
        verify: Verifier,
        event: str,
        data: Callable[[Any], Any] | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> Webhook:
        """Receive signed deliveries at ``POST /api/v1/webhooks/{name}`` (``tarry serve``).

        ``verify``: ``tarry.verify.stripe(secret)``, ``github``, ``slack`` or
        ``hmac_sha256``. ``event``: the name of the event each delivery becomes, a
        template such as ``"stripe/{{type}}"`` (see ``EventTemplate``). ``data``: a
        function of the parsed body giving the event's data (default: the body).
        ``max_body``: the largest delivery accepted, in bytes (413 above it)."""
        check_name(name, "webhook name")
        if len(name) > MAX_WEBHOOK_NAME or not _WEBHOOK_NAME.fullmatch(name):
            raise ConfigError(
                f"webhook name {name!r} must be at most {MAX_WEBHOOK_NAME} letters, digits, "
                "'.', '_' or '-' (it is part of the URL), starting with a letter or digit"
            )
        if name in self._by_name:
            raise ConfigError(f"a webhook named {name!r} is already registered on this App")
        if not isinstance(verify, Verifier):
            raise ConfigError(
                f"verify must be a verifier such as tarry.verify.stripe(secret), got "
                f"{type(verify).__name__}: a webhook is never received unverified"
            )
        if data is not None and not callable(data):
            raise ConfigError(f"data must be a function of the parsed body, got {data!r}")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
            raise ConfigError(f"max_body must be a positive number of bytes, got {max_body!r}")
        hook = Webhook(name, verify, EventTemplate.parse(event), data, max_body)
        self._by_name[name] = hook
        return hook


# -- one delivery --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """A delivery sent as an event; ``duplicate``: a retry of one already received,
    which stored nothing new."""

    event_id: str
    event: str
    duplicate: bool
    started: list[str]
    resumed: list[str]


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the provider expects back instead of an event (Slack's challenge)."""

    answer: dict[str, Any]


async def receive(
    app: App, name: str, body: bytes, headers: Mapping[str, str]
) -> Accepted | Handshake:
    """Verify one delivery to source ``name`` and send it as an event.

    Raises ``WebhookNotFound``, ``BodyTooLarge``, ``tarry.verify.SignatureRejected``
    (nothing is parsed or stored), ``UnsupportedBody``, ``UnreadableBody`` and
    ``EventNameError``, each before anything is stored."""
    hook = app.webhooks.get(name)
    if hook is None:
        raise WebhookNotFound(f"no webhook named {name!r} is registered on this server")
    if len(body) > hook.max_body:
        raise BodyTooLarge(
            f"the delivery is {len(body):,} bytes, over webhook {name!r}'s limit of "
            f"{hook.max_body:,} (max_body=)"
        )
    lowered = {key.lower(): value for key, value in headers.items()}
    hook.verifier.verify(body, lowered, now=app.clock.now())
    payload = parse_body(body, lowered.get("content-type", ""))
    answer = hook.verifier.handshake(payload)
    if answer is not None:
        return Handshake(answer)
    event = hook.event.render(payload, lowered)
    event_id = _event_id(name, hook.verifier.delivery_id(body, lowered, payload), body)
    data = payload if hook.data is None else hook.data(payload)
    # A repeated id (a provider's retry) is told by the store's transaction, which
    # decides between two copies racing in too: the loser stores and starts nothing.
    sent = await app.send_event(event, data, id=event_id)
    return Accepted(sent.event_ids[0], event, sent.duplicate, sent.started, sent.resumed)


def parse_body(body: bytes, content_type: str) -> Any:
    """A form (``application/x-www-form-urlencoded``) as a dict, its repeated fields as
    lists, a lone JSON ``payload`` field as that JSON; anything else as JSON."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        return _form(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if media in ("", "application/json", "text/json") or media.endswith("+json"):
            raise UnreadableBody(f"the delivery is not valid JSON: {exc}") from None
        raise UnsupportedBody(
            f"the delivery is {media}, which tarry cannot read: a webhook must send JSON "
            "or a form (application/x-www-form-urlencoded)"
        ) from None


def _form(body: bytes) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
        fields = urllib.parse.parse_qs(
            text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=1000
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise UnreadableBody(f"the delivery is not a valid form: {exc}") from None
    form: dict[str, Any] = {k: v[0] if len(v) == 1 else v for k, v in fields.items()}
    if list(form) == ["payload"] and isinstance(form["payload"], str):
        try:
            inner = orjson.loads(form["payload"])
        except orjson.JSONDecodeError:
            return form
        if isinstance(inner, dict):
            return inner
    return form


def _event_id(name: str, delivery: str | None, body: bytes) -> str:
    """``<webhook name>:<delivery id>``, so that two sources' ids never collide; the
    body's digest when the provider gives no id; a digest of the id when it is too
    long or not a valid event id."""
    if delivery is None:
        return f"{name}:sha256-{hashlib.sha256(body).hexdigest()}"
    candidate = f"{name}:{delivery}"
    if len(candidate) <= MAX_NAME and "\x00" not in candidate:
        try:
            return check_name(candidate, "event id")
        except ValueError:
            pass
    return f"{name}:sha256-{hashlib.sha256(delivery.encode('utf-8', 'replace')).hexdigest()}"

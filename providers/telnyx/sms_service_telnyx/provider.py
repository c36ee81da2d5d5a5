"""The `telnyx` provider: sends SMS through the Telnyx v2 Messaging API."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import urllib.parse
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from sms_service.exceptions import (
    ConfigError,
    MessageRejected,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from sms_service.provider import (
    Balance,
    CallbackRefused,
    CallbackRequest,
    InboundMessage,
    Message,
    Provider,
    Receipt,
    ReceiverUnsubscribed,
    StatusUpdate,
)
from sms_service.provider_http import (
    ProviderAnswer,
    ProviderHTTP,
    base_url_setting,
    error_for_status,
)
from sms_service.provider_values import decimal_amount, one_line, setting
from sms_service_telnyx import signature

log = logging.getLogger(__name__)

NAME = "telnyx"
DEFAULT_BASE_URL = "https://api.telnyx.com"
# Telnyx error codes (developers.telnyx.com/api/errors) whose meaning decides the class.
AUTH_CODES = frozenset({"10009"})  # authentication failed: nothing was processed
RATE_LIMIT_CODES = frozenset({"10011"})  # too many requests: nothing was processed
REJECTED_CODES = frozenset({"10002", "10016"})  # invalid phone number, not E.164
# "Blocked due to STOP message": the receiver sent STOP to this sender (HTTP 409 at send,
# or an error of message.finalized).
OPTED_OUT_CODE = "40300"
MAX_CODE_CHARS = 50
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# Telnyx's per-recipient statuses (to[].status) -> the service's status (SPEC section 10).
STATUS_MAP = {
    "queued": "queued", "scheduled": "queued",
    "sending": "sent", "sent": "sent",
    "delivered": "delivered",
    "delivery_failed": "undelivered", "expired": "undelivered",
    "sending_failed": "failed",
    # Final for Telnyx, yet the outcome is unknown: not final in the service's terms.
    "delivery_unconfirmed": "sent",
}
STATUS_EVENTS = frozenset({"message.sent", "message.finalized"})
INBOUND_EVENT = "message.received"

_SECRET = re.compile(r"[!-~]+")

try:
    _VERSION = metadata.version("sms-service-telnyx")
except metadata.PackageNotFoundError:  # running from a checkout that is not installed
    _VERSION = "0+unknown"


class TelnyxProvider(Provider):
    """Sends through Telnyx; reads only ``TELNYX_*`` variables.

    Bearer auth with ``TELNYX_API_KEY``; webhooks verified with ``TELNYX_PUBLIC_KEY``
    (Ed25519, required when status callbacks are on). Thread-safe: all state is built
    once in ``__init__``.
    """

    PLUGIN_API = (1, 3)

    def __init__(self, env: Mapping[str, str], *, timeout: float, callback_url: str | None = None) -> None:
        """Read and check the ``TELNYX_*`` variables and build the pooled client.

        Raises `ConfigError` naming the variable that is missing or wrong (the public
        key is required when `callback_url` is given); the message never contains a
        secret.
        """
        super().__init__(env, timeout=timeout, callback_url=callback_url)
        api_key = setting(env, "TELNYX_API_KEY")
        if api_key is None:
            raise ConfigError("TELNYX_API_KEY is required for the telnyx provider")
        if not _SECRET.fullmatch(api_key):
            raise ConfigError("TELNYX_API_KEY must be printable ASCII with no spaces or line breaks")
        self._public_key = _public_key(env, required=callback_url is not None)
        profile = setting(env, "TELNYX_MESSAGING_PROFILE_ID")
        if profile is not None and not _SECRET.fullmatch(profile):
            raise ConfigError("TELNYX_MESSAGING_PROFILE_ID must be printable ASCII with no spaces")
        self.messaging_profile_id = profile
        base_url = base_url_setting(env, "TELNYX_BASE_URL", DEFAULT_BASE_URL)
        self.messages_url = f"{base_url}/v2/messages"
        self.balance_url = f"{base_url}/v2/balance"
        self._http = ProviderHTTP(
            NAME,
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json",
                     "User-Agent": f"sms-service-telnyx/{_VERSION}"},
        )

    def __repr__(self) -> str:
        return (f"TelnyxProvider(messaging_profile_id={self.messaging_profile_id!r}, "
                f"url={self.messages_url!r})")

    def send(self, message: Message) -> Receipt:
        """Create a Telnyx message and return its receipt.

        Raises `ReceiverUnsubscribed` (40300: the receiver sent STOP), `MessageRejected`
        (10002, 10016 and other 4xx that judge the message), `ProviderAuthError` (10009,
        401/403: nothing was sent), `ProviderRateLimited` (10011, 429: nothing was sent),
        `ProviderUnreachable` (no connection), `ProviderUnavailable` (5xx, a wrong base
        URL, a lost connection, an answer without a message id) or `ProviderTimeout`.
        """
        payload: dict[str, Any] = {"from": message.sender, "to": message.receiver, "text": message.body}
        if self.messaging_profile_id:
            payload["messaging_profile_id"] = self.messaging_profile_id
        if message.status_callback:
            payload["webhook_url"] = message.status_callback
        answer = self._http.request("POST", self.messages_url, json=payload)
        if not 200 <= answer.status < 300:
            raise _send_error(answer)
        data = _data(answer)
        sid = data.get("id")
        if not isinstance(sid, str) or not sid.strip() or not sid.isprintable():
            raise _unreadable(answer, "answer lacks the message id")
        recipient = _recipient(data)
        status = _text(recipient.get("status")) or "queued"
        price, unit = _cost(data.get("cost"))
        return Receipt(sid=sid.strip(), status=status, date_event=_when(data.get("received_at")),
                       num_segments=_parts(data.get("parts")), price=price, price_unit=unit)

    def balance(self) -> Balance:
        """Return what the account can still spend: ``available_credit`` (else ``balance``).

        Raises `ProviderAuthError` (401/403), `ProviderRateLimited` (429),
        `ProviderUnavailable` (any other failure, or no readable amount) or
        `ProviderTimeout`.
        """
        answer = self._http.request("GET", self.balance_url)
        if not 200 <= answer.status < 300:
            raise _read_error(answer)
        data = _data(answer)
        amount = decimal_amount(data.get("available_credit"))
        if amount is None:
            amount = decimal_amount(data.get("balance"))
        if amount is None:
            raise _unreadable(answer, "balance answer lacks a readable available_credit or balance")
        return Balance(amount=amount, currency=_text(data.get("currency")) or "")

    def fetch_status(self, sid: str) -> StatusUpdate:
        """Read ``GET /v2/messages/{id}``: the recipient's status, the first error, the cost.

        Raises `LookupError` when Telnyx does not know `sid` (404), `ProviderRateLimited`
        (429), `ProviderAuthError` (401/403), `ProviderUnavailable` (any other failure, or
        a message without a status) or `ProviderTimeout`.
        """
        answer = self._http.request("GET", f"{self.messages_url}/{urllib.parse.quote(sid, safe='')}")
        if answer.status == 404:
            raise LookupError(f"{NAME} does not know this message")
        if not 200 <= answer.status < 300:
            raise _read_error(answer)
        update = _message_update(_data(answer), fallback_sid=sid)
        if update is None:
            raise _unreadable(answer, "message lacks a recipient status")
        return update

    def parse_status_callback(self, request: CallbackRequest) -> list[StatusUpdate]:
        """Verify the Ed25519 signature and read ``message.sent`` / ``message.finalized``.

        Other events (``message.received`` included) give no update. Raises
        `CallbackRefused` when the signature is missing, wrong or its timestamp more
        than 300 s away, and `ValueError` when a signed webhook is not a Telnyx event
        or its message has no id or status.
        """
        event_type, payload = self._event(request)
        if event_type not in STATUS_EVENTS:
            return []
        update = _message_update(payload)
        if update is None:
            raise ValueError("the webhook's message has no id or recipient status")
        return [update]

    def parse_inbound(self, request: CallbackRequest) -> list[InboundMessage]:
        """Verify the Ed25519 signature and read a ``message.received`` event.

        The messaging profile's webhook posts every event here: status events give
        nothing (their messages report to the URL each send names). Raises
        `CallbackRefused` as `parse_status_callback` does, and `ValueError` when a signed
        ``message.received`` has no sender.
        """
        event_type, payload = self._event(request)
        if event_type != INBOUND_EVENT:
            return []
        sender = payload.get("from")
        number = _text(sender.get("phone_number")) if isinstance(sender, dict) else _text(sender)
        if not number:
            raise ValueError("the inbound message has no sender")
        text = payload.get("text")
        return [InboundMessage(sender=number, body=text if isinstance(text, str) else "")]

    def _event(self, request: CallbackRequest) -> tuple[str, dict[str, Any]]:
        if self._public_key is None:
            raise CallbackRefused("TELNYX_PUBLIC_KEY is not set: webhooks cannot be verified")
        headers = request.headers
        reason = signature.problem(self._public_key, request.body, headers.get("telnyx-signature-ed25519"),
                                   headers.get("telnyx-timestamp"))
        if reason is not None:
            raise CallbackRefused(reason)
        try:
            event = json.loads(request.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ValueError("the webhook body is not JSON") from None
        data = event.get("data") if isinstance(event, dict) else None
        payload = data.get("payload") if isinstance(data, dict) else None
        event_type = data.get("event_type") if isinstance(data, dict) else None
        if not isinstance(event_type, str) or not isinstance(payload, dict):
            raise ValueError("the webhook is not a Telnyx event with a payload")
        return event_type, payload

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()


# -- configuration --------------------------------------------------------------------


def _public_key(env: Mapping[str, str], required: bool) -> Any:
    value = setting(env, "TELNYX_PUBLIC_KEY")
    if value is None:
        if required:
            raise ConfigError("TELNYX_PUBLIC_KEY is required when PUBLIC_BASE_URL is set: it verifies "
                              "Telnyx's webhook signatures")
        return None
    try:
        return signature.load_public_key(value)
    except ValueError:
        raise ConfigError("TELNYX_PUBLIC_KEY must be the base64 Ed25519 public key (32 bytes) "
                          "from the Telnyx portal") from None


# -- answers --------------------------------------------------------------------------


def _data(answer: ProviderAnswer) -> dict[str, Any]:
    """The ``data`` object of a JSON answer; raises `ProviderUnavailable` when there is none."""
    body = answer.json()
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise _unreadable(answer, "answer has no data object")
    return data


def _unreadable(answer: ProviderAnswer, what: str) -> ProviderUnavailable:
    return ProviderUnavailable(f"{NAME} {what}", http_status=answer.status, request_id=answer.request_id)


def _first_error(answer: ProviderAnswer) -> tuple[str | None, str]:
    """The first error's code and its title/detail, from ``{"errors": [{code, title, detail}]}``."""
    try:
        body = answer.json()
    except ProviderUnavailable:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = _text(first.get("code"))
    title, detail = _text(first.get("title")), _text(first.get("detail"))
    reason = f"{title}: {detail}" if title and detail and detail != title else (title or detail or "")
    return (code[:MAX_CODE_CHARS] if code else None), one_line(reason) or f"answered HTTP {answer.status}"


def _send_error(answer: ProviderAnswer) -> ProviderError:
    """Map a failed send: the Telnyx code decides where it is documented, else the HTTP status."""
    code, reason = _first_error(answer)
    text = f"{NAME} error {code}: {reason}" if code else f"{NAME}: {reason}"
    kwargs = {"provider_code": code, "http_status": answer.status, "request_id": answer.request_id}
    # Only a 4xx is a refusal: under any other status a code proves nothing about the SMS.
    if not 400 <= answer.status < 500:
        return error_for_status(answer, reason, code)
    if code in AUTH_CODES:
        return ProviderAuthError(f"{NAME} refused our credentials", **kwargs)
    if code in RATE_LIMIT_CODES:
        return ProviderRateLimited(text, retry_after=answer.retry_after, **kwargs)
    if code == OPTED_OUT_CODE:
        return ReceiverUnsubscribed(text, **kwargs)
    if code in REJECTED_CODES:
        return MessageRejected(text, **kwargs)
    return error_for_status(answer, reason, code)


def _read_error(answer: ProviderAnswer) -> ProviderError:
    """Map a failed balance or lookup: a 4xx other than auth or 429 judges no message."""
    code, reason = _first_error(answer)
    if code in AUTH_CODES or answer.status in (401, 403) or answer.status >= 500:
        if code in AUTH_CODES:
            return ProviderAuthError(f"{NAME} refused our credentials", provider_code=code,
                                     http_status=answer.status, request_id=answer.request_id)
        return error_for_status(answer, reason, code)
    if answer.status == 429 or code in RATE_LIMIT_CODES:
        return ProviderRateLimited(f"{NAME}: {reason}", provider_code=code, http_status=answer.status,
                                   request_id=answer.request_id, retry_after=answer.retry_after)
    return ProviderUnavailable(f"{NAME} lookup failed: {reason}", provider_code=code,
                               http_status=answer.status, request_id=answer.request_id)


def _text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = one_line(str(value))
    return text or None


def _parts(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value > 0 else None


def _when(value: object) -> dt.datetime:
    """Read an ISO 8601 time as aware UTC; now when absent or unreadable (the SMS has gone)."""
    if isinstance(value, str) and value.strip() and value.isascii():
        try:
            when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            when = when.astimezone(dt.UTC)
        except (ValueError, OverflowError):
            when = None
        if when is not None and when >= EARLIEST:
            return when
    return dt.datetime.now(dt.UTC)


def _cost(cost: object) -> tuple[str | None, str | None]:
    """``cost: {"amount", "currency"}`` as (price, unit); None for a null, zero or unreadable amount."""
    if not isinstance(cost, dict):
        return None, None
    amount = cost.get("amount")
    value = decimal_amount(amount)
    if value is None or value == 0:
        return None, None
    currency = _text(cost.get("currency"))
    return str(amount).strip().lstrip("-+"), (currency.upper()[:3] if currency else None)


# -- statuses -------------------------------------------------------------------------


def normalise(word: str) -> str:
    """The service's status for a Telnyx word: see `STATUS_MAP`; ``sent`` for any other."""
    return STATUS_MAP.get(word.strip().lower(), "sent")


def _recipient(message: dict[str, Any]) -> dict[str, Any]:
    to = message.get("to")
    if isinstance(to, list) and to and isinstance(to[0], dict):
        return to[0]
    return {}


def _message_update(message: dict[str, Any], fallback_sid: str | None = None) -> StatusUpdate | None:
    """A `StatusUpdate` from a Telnyx message (a webhook's payload, a lookup); None without id or status."""
    sid = _text(message.get("id")) or fallback_sid
    recipient = _recipient(message)
    word = _text(recipient.get("status"))
    if not sid or not word:
        return None
    codes = [_text(e.get("code")) for e in message.get("errors") or () if isinstance(e, dict)]
    codes = [c[:MAX_CODE_CHARS] for c in codes if c]
    price, unit = _cost(message.get("cost"))
    return StatusUpdate(sid=sid, status=normalise(word), provider_status=word,
                        error_code=codes[0] if codes else None, receiver=_text(recipient.get("phone_number")),
                        opted_out=OPTED_OUT_CODE in codes, price=price, price_unit=unit if price else None)

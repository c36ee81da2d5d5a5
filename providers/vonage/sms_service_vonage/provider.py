"""The `vonage` provider: sends SMS through the Vonage (ex-Nexmo) SMS API, ``/sms/json``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Mapping
from decimal import Decimal
from importlib import metadata
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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
    StatusUpdate,
)
from sms_service.provider_http import (
    ProviderAnswer,
    ProviderHTTP,
    base_url_setting,
    error_for_status,
)
from sms_service.provider_values import Secret, decimal_amount, one_line, setting
from sms_service_vonage import signature

log = logging.getLogger(__name__)

NAME = "vonage"
DEFAULT_BASE_URL = "https://rest.nexmo.com"
DEFAULT_CURRENCY = "EUR"
DEFAULT_SIGNATURE_METHOD = "md5hash"
# Vonage refuses a longer per-message `callback` (its SMS API specification).
MAX_CALLBACK_CHARS = 100
# A signed webhook older than this is refused as a replay. Vonage resends a webhook it
# could not deliver for 24 h; whether a resend is signed afresh is UNCONFIRMED, so the
# window covers the whole resend period.
MAX_SIGNATURE_AGE_S = 25 * 3600
MAX_SIGNATURE_SKEW_S = 300
OK = "0"

# What each documented non-zero `status` of an HTTP 200 send answer means. `nothing_sent`
# is True only where the code says Vonage refused the request before taking the
# message. Anything not listed reads as "unknown": ProviderUnavailable, not nothing sent.
_RATE_LIMITED = ("throttled", ProviderRateLimited, True)
_AUTH = ("auth", ProviderAuthError, True)
_REJECTED = ("rejected", MessageRejected, True)
STATUS_CODES: dict[str, tuple[str, type[ProviderError], bool]] = {
    "1": _RATE_LIMITED,     # throttled: over the account's rate
    "2": _REJECTED,         # missing parameters
    "3": _REJECTED,         # invalid parameters (a number or sender in the wrong form)
    "4": _AUTH,             # invalid credentials
    "5": ("internal", ProviderUnavailable, False),  # internal error: the SMS may have gone
    "6": _REJECTED,         # invalid message: unroutable destination prefix
    "7": _REJECTED,         # number barred
    "8": _AUTH,             # partner account barred: this account cannot send at all
    "9": ("quota", ProviderUnavailable, True),      # partner quota violation: no credit left
    "10": _RATE_LIMITED,    # too many existing binds
    "11": _AUTH,            # account not enabled for HTTP
    "12": _REJECTED,        # message too long
    "14": _AUTH,            # invalid signature (the account requires signed requests)
    "15": _REJECTED,        # invalid sender address
    "22": _REJECTED,        # invalid network code
    "23": ("callback", ProviderUnavailable, True),  # invalid callback URL: PUBLIC_BASE_URL
    "29": _REJECTED,        # non-whitelisted destination (trial account)
    "32": _AUTH,            # signature and API secret both given
    "33": _REJECTED,        # number de-activated
}

# Vonage delivery receipt `status` -> the service's normalised status (SPEC section 10).
# "accepted", "buffered" and "unknown" are not final; anything unlisted reads as "sent".
STATUS_MAP = {
    "delivered": "delivered",
    "expired": "undelivered",
    "failed": "undelivered",
    "rejected": "failed",
    "accepted": "sent",
    "buffered": "sent",
    "unknown": "sent",
}
# DLR err-code 9: the receiver asked not to get messages (opt-out).
OPT_OUT_ERROR = "9"
NO_ERROR = "0"

_API_KEY = re.compile(r"[0-9A-Za-z]{1,64}")
_SECRET = re.compile(r"[!-~]+")
_CURRENCY = re.compile(r"[A-Z]{3}")
_DIGITS = re.compile(r"[0-9]{1,16}")

try:
    _VERSION = metadata.version("sms-service-vonage")
except metadata.PackageNotFoundError:  # running from a checkout that is not installed
    _VERSION = "0+unknown"


class VonageProvider(Provider):
    """Sends through Vonage's SMS API; reads only ``VONAGE_*`` variables.

    Authenticates with HTTP Basic ``api_key:api_secret``, so no secret is ever in a URL
    or a form. Verifies webhooks with ``sig`` when ``VONAGE_SIGNATURE_SECRET`` is set,
    else the service checks the ``CALLBACK_SECRET`` token in their URL. Thread-safe: all
    state is built once in ``__init__``.
    """

    PLUGIN_API = (1, 3)
    # Class default: without a signature secret Vonage's webhooks are not signed.
    callbacks_signed = False

    @classmethod
    def signs_callbacks(cls, env: Mapping[str, str]) -> bool:
        """Tell whether webhooks are verified by ``sig``: when ``VONAGE_SIGNATURE_SECRET`` is set."""
        return setting(env, "VONAGE_SIGNATURE_SECRET") is not None

    def __init__(self, env: Mapping[str, str], *, timeout: float, callback_url: str | None = None) -> None:
        """Read and check the ``VONAGE_*`` variables and build the pooled client.

        Raises `ConfigError` naming the variable that is missing or wrong; the message
        never contains a secret.
        """
        super().__init__(env, timeout=timeout, callback_url=callback_url)
        api_key = setting(env, "VONAGE_API_KEY")
        if api_key is None:
            raise ConfigError("VONAGE_API_KEY is required for the vonage provider")
        if not _API_KEY.fullmatch(api_key):
            raise ConfigError("VONAGE_API_KEY must be letters and digits (the key on the Vonage dashboard)")
        self.api_key = api_key
        api_secret = _secret(env, "VONAGE_API_SECRET", required=True)
        signature_secret = _secret(env, "VONAGE_SIGNATURE_SECRET", required=False)
        self._signature_secret = Secret(signature_secret or "")
        self.signature_method = _signature_method(env)
        self.callbacks_signed = self.signs_callbacks(env)
        self.currency = _currency(env)
        base_url = base_url_setting(env, "VONAGE_BASE_URL", DEFAULT_BASE_URL)
        self.send_url = f"{base_url}/sms/json"
        self.balance_url = f"{base_url}/account/get-balance"
        if callback_url is not None and len(callback_url) > MAX_CALLBACK_CHARS:
            # The URL itself may carry the CALLBACK_SECRET token: say its length only.
            log.warning(
                f"PUBLIC_BASE_URL makes the vonage callback URL {len(callback_url)} characters long, "
                f"over Vonage's {MAX_CALLBACK_CHARS}: sends will not name it, so set it as the account's "
                "default delivery receipt URL on the Vonage dashboard"
            )
        self._http = ProviderHTTP(
            NAME,
            timeout=timeout,
            auth=(api_key, api_secret),
            headers={"Accept": "application/json", "User-Agent": f"sms-service-vonage/{_VERSION}"},
        )

    def __repr__(self) -> str:
        return (f"VonageProvider(api_key={self.api_key!r}, url={self.send_url!r}, "
                f"signed_callbacks={self.callbacks_signed})")

    # -- sending -----------------------------------------------------------------------

    def send(self, message: Message) -> Receipt:
        """Hand the message to Vonage and return its receipt.

        Vonage answers HTTP 200 for refusals too, with a non-zero ``status`` per part:
        each documented code is mapped (see `STATUS_CODES`). Raises `MessageRejected`
        (invalid or barred number, bad sender, message too long...),
        `ProviderRateLimited` (throttled: nothing sent), `ProviderAuthError` (credentials
        or account refused: nothing sent), `ProviderUnavailable` (an internal error, a
        5xx, an unreadable answer, some parts refused: the SMS may have gone; or no
        credit left, or a refused callback URL: nothing sent), `ProviderUnreachable` or
        `ProviderTimeout`.
        """
        answer = self._http.request("POST", self.send_url, data=self._form(message))
        if not 200 <= answer.status < 300:
            raise _http_error(answer)
        parts = _parts(answer)
        refused = [part for part in parts if part["status"] != OK]
        if refused:
            raise _refusal(answer, refused[0], partial=len(refused) < len(parts))
        sid = parts[0].get("message-id")
        if not isinstance(sid, str) or not sid.strip() or not sid.isprintable():
            raise _unreadable(answer, "answer lacks the message id")
        price = _total_price(parts)
        return Receipt(
            sid=sid.strip(),
            status="accepted",
            # Vonage's answer carries no time: it took the message now.
            date_event=dt.datetime.now(dt.UTC),
            num_segments=len(parts),
            price=price,
            price_unit=self.currency if price is not None else None,
        )

    def _form(self, message: Message) -> dict[str, str]:
        form = {"from": message.sender.removeprefix("+"), "to": message.receiver.removeprefix("+"),
                "text": message.body}
        if message.encoding == "UCS-2":
            form["type"] = "unicode"
        if message.status_callback:
            form["status-report-req"] = "1"
            # A longer URL would make Vonage refuse the message (status 23); the account's
            # default receipt URL then takes the reports (said at start-up).
            if len(message.status_callback) <= MAX_CALLBACK_CHARS:
                form["callback"] = message.status_callback
        for wire, names in (("entity-id", ("entity-id", "entity_id")),
                            ("content-id", ("content-id", "content_id"))):
            value = next((message.template_ids[n] for n in names if message.template_ids.get(n)), None)
            if value:
                form[wire] = value
        return form

    def balance(self) -> Balance:
        """Return the account balance from ``/account/get-balance`` (``VONAGE_CURRENCY``).

        Raises `ProviderAuthError` (401/403), `ProviderRateLimited` (429),
        `ProviderUnavailable` (any other failure, or no readable ``value``) or
        `ProviderTimeout`.
        """
        answer = self._http.request("GET", self.balance_url)
        if not 200 <= answer.status < 300:
            if answer.status in (401, 403, 429) or answer.status >= 500:
                raise _http_error(answer)
            raise ProviderUnavailable(f"{NAME} balance lookup answered HTTP {answer.status}",
                                      http_status=answer.status, request_id=answer.request_id)
        data = answer.json()
        amount = decimal_amount(data.get("value")) if isinstance(data, dict) else None
        if amount is None:
            raise _unreadable(answer, "balance answer lacks a readable value")
        return Balance(amount=amount, currency=self.currency)

    # -- webhooks ----------------------------------------------------------------------

    def parse_status_callback(self, request: CallbackRequest) -> list[StatusUpdate]:
        """Verify a delivery receipt (GET query, POST form or POST JSON) and read it.

        Raises `CallbackRefused` when ``sig`` is missing, wrong or too old (with a
        signature secret) or the receipt is for another API key, and `ValueError` when an
        authentic receipt has no ``messageId`` or ``status``.
        """
        params = self._authentic(request)
        sid = params.get("messageId") or params.get("message-id")
        word = (params.get("status") or "").strip().lower()
        if not sid or not word:
            raise ValueError("the delivery receipt has no messageId or status")
        code = (params.get("err-code") or "").strip()
        price = _positive(params.get("price"))
        return [StatusUpdate(
            sid=sid.strip(), status=STATUS_MAP.get(word, "sent"), provider_status=word,
            error_code=code if code and code != NO_ERROR else None,
            receiver=_e164(params.get("msisdn")), opted_out=code == OPT_OUT_ERROR,
            price=price, price_unit=self.currency if price is not None else None,
        )]

    def parse_inbound(self, request: CallbackRequest) -> list[InboundMessage]:
        """Verify an inbound message and read who wrote (``msisdn``) and what (``text``).

        A part of a concatenated message, or a binary message, is no whole reply: it
        gives no message. Raises `CallbackRefused` as `parse_status_callback`, and
        `ValueError` when an authentic post has no ``msisdn``.
        """
        params = self._authentic(request)
        sender = _e164(params.get("msisdn"))
        if sender is None:
            raise ValueError("the inbound message has no msisdn")
        if (params.get("concat") or "").lower() == "true" or params.get("type") == "binary":
            return []
        return [InboundMessage(sender=sender, body=params.get("text") or "")]

    def _authentic(self, request: CallbackRequest) -> dict[str, str]:
        """The webhook's parameters, once its ``sig`` (with a signature secret) is checked."""
        params = _params(request, keep_token=self.callbacks_signed)
        if self.callbacks_signed:
            secret = self._signature_secret.value
            if not signature.is_valid(params, secret, self.signature_method):
                raise CallbackRefused("the vonage sig is missing or does not match")
            if not _fresh(params.get("timestamp")):
                raise CallbackRefused("the vonage sig is too old or its timestamp is unreadable")
        elif not params:
            raise ValueError("a Vonage webhook has query, form or JSON fields")
        key = params.get("api-key")
        if key is not None and key != self.api_key:
            raise CallbackRefused("the webhook is for another Vonage API key")
        return params

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()


# -- configuration --------------------------------------------------------------------


def _secret(env: Mapping[str, str], name: str, *, required: bool) -> str | None:
    value = setting(env, name)
    if value is None:
        if required:
            raise ConfigError(f"{name} is required for the vonage provider")
        return None
    if not _SECRET.fullmatch(value):
        raise ConfigError(f"{name} must be printable ASCII with no spaces or line breaks "
                          "(check for stray newlines or quotes)")
    return value


def _signature_method(env: Mapping[str, str]) -> str:
    value = (setting(env, "VONAGE_SIGNATURE_METHOD") or DEFAULT_SIGNATURE_METHOD).strip().lower()
    if value not in signature.METHODS:
        raise ConfigError(f"VONAGE_SIGNATURE_METHOD must be one of {', '.join(signature.METHODS)}")
    return value


def _currency(env: Mapping[str, str]) -> str:
    value = (setting(env, "VONAGE_CURRENCY") or DEFAULT_CURRENCY).strip().upper()
    if not _CURRENCY.fullmatch(value):
        raise ConfigError("VONAGE_CURRENCY must be an ISO 4217 code such as EUR")
    return value


# -- answers --------------------------------------------------------------------------


def _parts(answer: ProviderAnswer) -> list[dict[str, Any]]:
    """The ``messages`` of a 2xx answer, one per part, each with a string ``status``.

    Raises `ProviderUnavailable` when the answer is not that shape.
    """
    data = answer.json()
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list) or not messages:
        raise _unreadable(answer, "answer has no messages")
    parts = []
    for part in messages:
        status = part.get("status") if isinstance(part, dict) else None
        if isinstance(status, int) and not isinstance(status, bool):
            status = str(status)
        if not isinstance(status, str) or not status.strip():
            raise _unreadable(answer, "answer has a message without a status")
        parts.append({**part, "status": status.strip()})
    return parts


def _refusal(answer: ProviderAnswer, part: dict[str, Any], *, partial: bool) -> ProviderError:
    """The error for a part Vonage refused (HTTP 200, non-zero ``status``)."""
    code = part["status"][:20]
    reason = one_line(part.get("error-text") if isinstance(part.get("error-text"), str) else "")
    text = f"{NAME} error {code}: {reason or 'refused'}"
    kwargs: dict[str, Any] = {"provider_code": code, "http_status": answer.status,
                              "request_id": answer.request_id}
    if partial:
        # Other parts were accepted: pieces of the message may be on their way.
        return ProviderUnavailable(f"{text} (some parts of the message were accepted)",
                                   nothing_sent=False, **kwargs)
    kind, cls, nothing_sent = STATUS_CODES.get(code, ("unknown", ProviderUnavailable, False))
    if kind == "auth":
        return ProviderAuthError(f"{NAME} refused our credentials or account ({text})", **kwargs)
    if kind == "throttled":
        return ProviderRateLimited(text, retry_after=answer.retry_after, **kwargs)
    if kind == "quota":
        return ProviderUnavailable(f"{text} (the account has no credit left)", nothing_sent=True, **kwargs)
    if kind == "callback":
        return ProviderUnavailable(f"{text} (Vonage refused the callback URL: check PUBLIC_BASE_URL)",
                                   nothing_sent=True, **kwargs)
    return cls(text, nothing_sent=nothing_sent, **kwargs)


def _http_error(answer: ProviderAnswer) -> ProviderError:
    """Map a non-2xx answer by its HTTP status (Vonage's errors are usually HTTP 200)."""
    try:
        data = answer.json()
    except ProviderUnavailable:
        data = None
    reason = ""
    if isinstance(data, dict):
        for key in ("error-text", "error_title", "title", "detail", "message"):
            if isinstance(data.get(key), str) and data[key].strip():
                reason = one_line(data[key])
                break
    return error_for_status(answer, reason or f"answered HTTP {answer.status}")


def _unreadable(answer: ProviderAnswer, what: str) -> ProviderUnavailable:
    return ProviderUnavailable(f"{NAME} {what}", http_status=answer.status, request_id=answer.request_id)


def _positive(value: object) -> str | None:
    """A price as Vonage wrote it, sign dropped; None when absent or unreadable."""
    amount = decimal_amount(value)
    if amount is None:
        return None
    return str(value).strip().lstrip("+-")


def _total_price(parts: list[dict[str, Any]]) -> str | None:
    """The sum of every part's ``message-price``; None when a part has none."""
    prices = [decimal_amount(part.get("message-price")) for part in parts]
    if any(price is None for price in prices):
        return None
    if len(prices) == 1:
        return _positive(parts[0].get("message-price"))
    return str(abs(sum(prices, Decimal(0))))


# -- webhooks -------------------------------------------------------------------------


def _params(request: CallbackRequest, *, keep_token: bool) -> dict[str, str]:
    """A webhook's fields, whichever way it came: POST form, POST JSON or GET query.

    Without signatures the URL's ``token`` (checked by the service) is no field of
    Vonage's; with them every query field is, as Vonage signed it.
    """
    if request.form:
        return {name: values[0] for name, values in request.form.items() if values}
    if isinstance(request.json, dict):
        # UNCONFIRMED: how Vonage writes non-string values when it signs a JSON body;
        # its receipts carry strings, and other scalars are taken as JSON writes them.
        return {name: value if isinstance(value, str) else json.dumps(value)
                for name, value in request.json.items()
                if isinstance(value, str | int | float | bool) or value is None}
    if request.json is None and not request.body.strip():
        pairs = parse_qsl(urlsplit(request.url).query, keep_blank_values=True)
        params: dict[str, str] = {}
        for name, value in pairs:
            if keep_token or name != "token":
                params.setdefault(name, value)
        return params
    raise ValueError("a Vonage webhook is a query, form fields or a JSON object")


def _fresh(value: str | None) -> bool:
    """Tell whether a signed webhook's ``timestamp`` (Unix seconds) is recent enough."""
    if not value or not value.strip().isascii() or not value.strip().isdigit() or len(value.strip()) > 12:
        return False
    age = time.time() - int(value.strip())
    return -MAX_SIGNATURE_SKEW_S <= age <= MAX_SIGNATURE_AGE_S


def _e164(value: str | None) -> str | None:
    """Vonage's ``msisdn`` (digits, no ``+``) as E.164; None when it is no number."""
    digits = (value or "").strip().removeprefix("+")
    return f"+{digits}" if _DIGITS.fullmatch(digits) else None

"""The `plivo` provider: sends SMS through Plivo's v1 Message REST API."""

from __future__ import annotations

import datetime as dt
import logging
import re
import urllib.parse
from collections.abc import Mapping
from importlib import metadata
from typing import Any

from sms_service.exceptions import (
    ConfigError,
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
from sms_service_plivo import signature

log = logging.getLogger(__name__)

NAME = "plivo"
DEFAULT_BASE_URL = "https://api.plivo.com"
# Plivo bills every account in US dollars; its callbacks and message records give
# amounts without a currency.
CURRENCY = "USD"
# "Source number blocked by STOP from destination number": the receiver opted out
# (support.plivo.com, "Can I reply to customers who have opted out?").
OPTED_OUT_CODE = "200"
# error_code of a message that had no error.
NO_ERROR_CODES = frozenset({"", "0", "000"})
MAX_CODE_CHARS = 50

# Plivo's message states -> the service's normalised status (SPEC section 10).
STATUS_MAP = {
    "queued": "queued",
    "sent": "sent",
    "delivered": "delivered", "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed", "rejected": "failed",
}
# States of inbound messages: no status of a message we sent.
INBOUND_STATES = frozenset({"received", "receiving"})

_AUTH_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_SECRET = re.compile(r"[!-~]+")

try:
    _VERSION = metadata.version("sms-service-plivo")
except metadata.PackageNotFoundError:  # running from a checkout that is not installed
    _VERSION = "0+unknown"


class PlivoProvider(Provider):
    """Sends through Plivo; reads only ``PLIVO_*`` variables.

    HTTP Basic auth ``PLIVO_AUTH_ID:PLIVO_AUTH_TOKEN``; the auth id is in every URL.
    The auth token also verifies ``X-Plivo-Signature-V3`` on callbacks. Thread-safe:
    all state is built once in ``__init__``.
    """

    PLUGIN_API = (1, 3)

    def __init__(self, env: Mapping[str, str], *, timeout: float, callback_url: str | None = None) -> None:
        """Read and check the ``PLIVO_*`` variables and build the pooled client.

        Raises `ConfigError` naming the variable that is missing or wrong; the message
        never contains a secret.
        """
        super().__init__(env, timeout=timeout, callback_url=callback_url)
        auth_id = setting(env, "PLIVO_AUTH_ID")
        if auth_id is None:
            raise ConfigError("PLIVO_AUTH_ID is required for the plivo provider")
        if not _AUTH_ID.fullmatch(auth_id):
            raise ConfigError("PLIVO_AUTH_ID must be letters and digits (MA... or SA...)")
        token = setting(env, "PLIVO_AUTH_TOKEN")
        if token is None:
            raise ConfigError("PLIVO_AUTH_TOKEN is required for the plivo provider")
        if not _SECRET.fullmatch(token):
            raise ConfigError("PLIVO_AUTH_TOKEN must be printable ASCII with no spaces or line breaks")
        self.auth_id = auth_id
        base_url = base_url_setting(env, "PLIVO_BASE_URL", DEFAULT_BASE_URL)
        self.account_url = f"{base_url}/v1/Account/{auth_id}/"
        self.messages_url = f"{self.account_url}Message/"
        self._token = Secret(token)
        self._http = ProviderHTTP(
            NAME,
            timeout=timeout,
            auth=(auth_id, token),
            headers={"Accept": "application/json", "User-Agent": f"sms-service-plivo/{_VERSION}"},
        )

    def __repr__(self) -> str:
        return f"PlivoProvider(auth_id={self.auth_id!r}, url={self.messages_url!r})"

    def send(self, message: Message) -> Receipt:
        """Hand the message to Plivo and return its receipt (status ``queued``).

        Raises `MessageRejected` (HTTP 400 and other 4xx that judge the message),
        `ProviderAuthError` (401/403: nothing was sent), `ProviderRateLimited` (429:
        nothing was sent, with ``retry_after`` when given), `ProviderUnreachable` (no
        connection), `ProviderUnavailable` (5xx, a 404/405 from a wrong base URL, a lost
        connection, an answer without a message uuid) or `ProviderTimeout`.
        """
        payload = {"src": message.sender, "dst": message.receiver, "text": message.body, "type": "sms"}
        if message.status_callback:
            payload["url"] = message.status_callback
            payload["method"] = "POST"
        answer = self._http.request("POST", self.messages_url, json=payload)
        data = _success_object(answer)
        uuids = data.get("message_uuid")
        sid = uuids[0] if isinstance(uuids, list) and uuids else None
        if not isinstance(sid, str) or not sid.strip() or not sid.isprintable():
            raise _unreadable(answer, "answer lacks the message uuid")
        # Plivo's answer has no status, date or segment count: the core counts segments.
        return Receipt(sid=sid.strip(), status="queued", date_event=dt.datetime.now(dt.UTC))

    def balance(self) -> Balance:
        """Return the account's ``cash_credits`` (US dollars).

        Raises `ProviderAuthError` (401/403), `ProviderRateLimited` (429),
        `ProviderUnavailable` (any other failure, or no readable ``cash_credits``) or
        `ProviderTimeout`.
        """
        answer = self._http.request("GET", self.account_url)
        if not 200 <= answer.status < 300:
            raise _read_error(answer)
        data = _json_object(answer)
        amount = decimal_amount(data.get("cash_credits"))
        if amount is None:
            raise _unreadable(answer, "account answer lacks a readable cash_credits")
        return Balance(amount=amount, currency=CURRENCY)

    def fetch_status(self, sid: str) -> StatusUpdate:
        """Read the message record ``GET .../Message/{uuid}/``: its state, error code and amount.

        Raises `LookupError` when Plivo does not know `sid` (404), `ProviderRateLimited`
        (429), `ProviderAuthError` (401/403), `ProviderUnavailable` (any other failure,
        or a record without ``message_state``) or `ProviderTimeout`.
        """
        url = self.messages_url + urllib.parse.quote(sid, safe="") + "/"
        answer = self._http.request("GET", url)
        if answer.status == 404:
            raise LookupError(f"{NAME} does not know this message")
        if not 200 <= answer.status < 300:
            raise _read_error(answer)
        data = _json_object(answer)
        word = _text_value(data.get("message_state"))
        if not word:
            raise _unreadable(answer, "message record lacks message_state")
        found = _text_value(data.get("message_uuid")) or sid
        return _update(found, word, _text_value(data.get("error_code")), _text_value(data.get("to_number")),
                       _text_value(data.get("total_amount")))

    def parse_status_callback(self, request: CallbackRequest) -> list[StatusUpdate]:
        """Verify ``X-Plivo-Signature-V3`` and read the message's status.

        Raises `CallbackRefused` when the signature or its nonce is missing or wrong, and
        `ValueError` when a signed callback has no ``MessageUUID`` or ``Status``.
        """
        self._verify(request)
        sid = (request.value("MessageUUID") or "").strip()
        word = (request.value("Status") or "").strip()
        if not sid or not word:
            raise ValueError("the callback has no MessageUUID or Status")
        if word.lower() in INBOUND_STATES:
            return []
        return [_update(sid, word, request.value("ErrorCode"), request.value("To"),
                        request.value("TotalAmount"))]

    def parse_inbound(self, request: CallbackRequest) -> list[InboundMessage]:
        """Verify ``X-Plivo-Signature-V3`` and read the message a person sent to our number.

        The sender is ``From`` (Plivo writes it without ``+``), the text ``Text``.
        Raises `CallbackRefused` like `parse_status_callback`, and `ValueError` when a
        signed post has no ``From``.
        """
        self._verify(request)
        sender = _e164(request.value("From"))
        if sender is None:
            raise ValueError("the inbound message has no From")
        return [InboundMessage(sender=sender, body=request.value("Text") or "")]

    def _verify(self, request: CallbackRequest) -> None:
        valid = signature.is_valid(self._token.value, request.url, request.form,
                                   request.headers.get("x-plivo-signature-v3-nonce"),
                                   request.headers.get("x-plivo-signature-v3"))
        if not valid:
            raise CallbackRefused("X-Plivo-Signature-V3 is missing or does not match")

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()


# -- answers --------------------------------------------------------------------------


def _json_object(answer: ProviderAnswer) -> dict[str, Any]:
    """Return the JSON object of an answer; raises `ProviderUnavailable` otherwise."""
    data = answer.json()
    if not isinstance(data, dict):
        raise _unreadable(answer, "answer is not a JSON object")
    return data


def _success_object(answer: ProviderAnswer) -> dict[str, Any]:
    """Return the JSON object of a 2xx answer; raises the mapped `ProviderError` otherwise."""
    if not 200 <= answer.status < 300:
        raise error_for_status(answer, *_details(answer))
    return _json_object(answer)


def _unreadable(answer: ProviderAnswer, what: str) -> ProviderUnavailable:
    return ProviderUnavailable(f"{NAME} {what}", http_status=answer.status, request_id=answer.request_id)


def _read_error(answer: ProviderAnswer) -> ProviderError:
    """Map a failed balance or lookup answer: a 4xx other than auth or 429 judges no message."""
    reason, code = _details(answer)
    if answer.status in (401, 403) or answer.status >= 500:
        return error_for_status(answer, reason, code)
    if answer.status == 429:
        return ProviderRateLimited(f"{NAME}: {reason}", http_status=429, request_id=answer.request_id,
                                   retry_after=answer.retry_after)
    return ProviderUnavailable(f"{NAME} lookup failed: {reason}", http_status=answer.status,
                               request_id=answer.request_id)


def _details(answer: ProviderAnswer) -> tuple[str, str | None]:
    """Plivo's reason from an error body ``{"api_id", "error"}``; `error` a string or an object."""
    try:
        data = answer.json()
    except ProviderUnavailable:
        data = None
    reason = ""
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, str):
            reason = error
        elif isinstance(error, dict):
            reason = "; ".join(f"{key}: {_flat(value)}" for key, value in error.items() if _flat(value))
        if not reason and isinstance(data.get("message"), str):
            reason = data["message"]
    return one_line(reason) or f"answered HTTP {answer.status}", None


def _flat(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value if isinstance(v, str | int))
    return str(value) if isinstance(value, str | int) else ""


def _text_value(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = one_line(str(value))
    return text or None


# -- statuses -------------------------------------------------------------------------


def normalise(word: str) -> str:
    """The service's status for a Plivo state: see `STATUS_MAP`; ``sent`` for any other."""
    return STATUS_MAP.get(word.strip().lower(), "sent")


def _e164(number: str | None) -> str | None:
    # Plivo writes numbers as digits without the plus.
    number = (number or "").strip()
    if not number:
        return None
    return number if number.startswith("+") else "+" + number


def _price(amount: str | None) -> str | None:
    """The amount as Plivo wrote it, sign dropped; None when absent or zero.

    Plivo writes ``0.00000`` until it has charged (and for messages it does not charge),
    which says nothing about the price.
    """
    value = decimal_amount(amount)
    if value is None or value == 0 or amount is None:
        return None
    return amount.strip().lstrip("-+")


def _update(sid: str, word: str, error_code: str | None, to: str | None, amount: str | None) -> StatusUpdate:
    status = normalise(word)
    code = (error_code or "").strip()[:MAX_CODE_CHARS]
    code = None if code in NO_ERROR_CODES else code
    price = _price(amount)
    return StatusUpdate(sid=sid, status=status, provider_status=word.strip(), error_code=code,
                        receiver=_e164(to), opted_out=code == OPTED_OUT_CODE,
                        price=price, price_unit=CURRENCY if price else None)

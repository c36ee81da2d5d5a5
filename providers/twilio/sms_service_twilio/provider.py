"""The `twilio` provider: sends SMS through Twilio's 2010-04-01 Messages REST API."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import re
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
    MessageRejected,
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
from sms_service.provider_values import Secret, decimal_amount, one_line, setting
from sms_service.scrub import Scrubber, scrub_error
from sms_service_twilio import signature

log = logging.getLogger(__name__)

NAME = "twilio"
DEFAULT_BASE_URL = "https://api.twilio.com"
API_VERSION = "2010-04-01"
RATE_LIMIT_CODE = 20429
# "Attempt to send to unsubscribed recipient": the receiver replied STOP to this sender.
UNSUBSCRIBED_CODE = 21610
# An empty TwiML answer: Twilio sends no reply to the inbound message.
EMPTY_TWIML = b"<Response/>"
# An earlier date_created is a placeholder, not when Twilio took the message; it would
# also print as a year of fewer than four digits.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
# HTTP Basic credentials go out latin-1 encoded by requests; printable ASCII without
# spaces is what Twilio issues, and checking it here keeps an encoding error off the
# hot path.
_SECRET = re.compile(r"[!-~]+")
_DIGITS = re.compile(r"[0-9]+")

# Twilio's MessageStatus words -> the service's normalised status (SPEC section 10).
STATUS_MAP = {
    "accepted": "queued", "scheduled": "queued", "queued": "queued",
    "sending": "sent", "sent": "sent",
    "delivered": "delivered", "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed", "canceled": "failed",
    # Not final in the service's terms: some parts arrived, the outcome is not known.
    "partially_delivered": "sent",
}
# Statuses of inbound messages: no status of a message we sent.
INBOUND_STATUSES = frozenset({"receiving", "received"})

try:
    _VERSION = metadata.version("sms-service-twilio")
except metadata.PackageNotFoundError:  # running from a checkout that is not installed
    _VERSION = "0+unknown"


class TwilioProvider(Provider):
    """Sends through Twilio Programmable Messaging; reads only ``TWILIO_*`` variables.

    Authenticates with ``TWILIO_ACCOUNT_SID`` + ``TWILIO_AUTH_TOKEN``, or with an API
    key (``TWILIO_API_KEY_SID`` + ``TWILIO_API_KEY_SECRET``); the Account SID is in
    every URL either way. Thread-safe: all state is built once in ``__init__``.
    """

    PLUGIN_API = (1, 3)

    def __init__(self, env: Mapping[str, str], *, timeout: float, callback_url: str | None = None) -> None:
        """Read and check the ``TWILIO_*`` variables and build the pooled client.

        With `callback_url` (status callbacks on), ``TWILIO_AUTH_TOKEN`` is required
        even beside an API key: only the auth token verifies ``X-Twilio-Signature``.
        Raises `ConfigError` naming the variable that is missing or wrong; the message
        never contains a secret.
        """
        super().__init__(env, timeout=timeout, callback_url=callback_url)
        account_sid = setting(env, "TWILIO_ACCOUNT_SID")
        if account_sid is None:
            raise ConfigError("TWILIO_ACCOUNT_SID is required for the twilio provider")
        if not _ACCOUNT_SID.fullmatch(account_sid):
            raise ConfigError("TWILIO_ACCOUNT_SID must be AC followed by 32 hex characters")
        self.account_sid = account_sid
        base_url = base_url_setting(env, "TWILIO_BASE_URL", DEFAULT_BASE_URL)
        root = f"{base_url}/{API_VERSION}/Accounts/{account_sid}"
        self.messages_url = f"{root}/Messages.json"
        self.message_url = f"{root}/Messages/{{sid}}.json"
        self.balance_url = f"{root}/Balance.json"
        auth, token = _credentials(env, account_sid, callbacks=callback_url is not None)
        self._scrubber = Scrubber([callback_url, token, auth[1]])
        self._verify_token = Secret(token or "")
        self._http = ProviderHTTP(
            NAME,
            timeout=timeout,
            auth=auth,
            headers={"Accept": "application/json", "User-Agent": f"sms-service-twilio/{_VERSION}"},
        )

    def __repr__(self) -> str:
        return f"TwilioProvider(account_sid={self.account_sid!r}, url={self.messages_url!r})"

    def send(self, message: Message) -> Receipt:
        """Create a Twilio Message and return its receipt.

        Raises `MessageRejected` (Twilio refused the message: bad number, opted out...),
        `ProviderRateLimited` (HTTP 429 or code 20429, with ``retry_after`` when given),
        `ProviderAuthError` (401/403), `ProviderUnreachable` (no connection: nothing was
        sent), `ProviderUnavailable` (5xx, connection lost, or an answer without a
        message id) or `ProviderTimeout`.
        """
        try:
            return self._send(message)
        except ProviderError as exc:
            # An answer may echo what it was sent: the callback URL (its token forges
            # callbacks) or a credential never reach an error text.
            scrub_error(exc, self._scrubber)
            raise

    def _send(self, message: Message) -> Receipt:
        form = {"To": message.receiver, "From": message.sender, "Body": message.body}
        if message.status_callback:
            form["StatusCallback"] = message.status_callback
        answer = self._http.request("POST", self.messages_url, data=form)
        data = _success_object(answer)
        sid = data.get("sid")
        if not isinstance(sid, str) or not sid.strip():
            raise _unreadable(answer, "answer lacks the message id")
        status = data.get("status")
        price, unit = _price(data.get("price"), data.get("price_unit"))
        return Receipt(
            sid=sid,
            status=status if isinstance(status, str) and status else "queued",
            date_event=_date_created(data.get("date_created")),
            num_segments=_segments(data.get("num_segments")),
            price=price, price_unit=unit,
        )

    def fetch_status(self, sid: str) -> StatusUpdate:
        """Read the message `sid` back from Twilio: its status, error code and price.

        Raises `LookupError` when Twilio does not know it (404), `ProviderRateLimited`
        (HTTP 429 or code 20429: never processed, safe to ask again later), and the same
        errors as `send` for any other failed call.
        """
        if not sid or not sid.isascii() or not sid.isalnum():
            raise LookupError("not a Twilio message sid")
        answer = self._http.request("GET", self.message_url.format(sid=sid))
        if answer.status == 404:
            raise LookupError("Twilio does not know this message")
        data = _success_object(answer)
        word = data.get("status")
        if not isinstance(word, str) or not word.strip():
            raise _unreadable(answer, "message lookup lacks a status")
        word = word.strip().lower()
        code = data.get("error_code")
        price, unit = _price(data.get("price"), data.get("price_unit"))
        return StatusUpdate(sid=sid, status=STATUS_MAP.get(word, "sent"), provider_status=word,
                            error_code=str(code) if isinstance(code, int | str) and str(code) else None,
                            price=price, price_unit=unit)

    def balance(self) -> Balance:
        """Return the account balance (it can be negative).

        Raises `ProviderUnavailable` when the answer has no readable balance, and the
        same errors as `send` for a failed call.
        """
        try:
            return self._balance()
        except ProviderError as exc:
            scrub_error(exc, self._scrubber)
            raise

    def _balance(self) -> Balance:
        answer = self._http.request("GET", self.balance_url)
        data = _success_object(answer)
        amount = decimal_amount(data.get("balance"))
        if amount is None:
            raise _unreadable(answer, "balance answer lacks a readable balance")
        currency = data.get("currency")
        # The guard only compares the amount, so a missing currency label is no reason
        # to refuse every send.
        return Balance(amount=amount, currency=currency if isinstance(currency, str) else "")

    inbound_answer = ("text/xml", EMPTY_TWIML)

    def parse_status_callback(self, request: CallbackRequest) -> list[StatusUpdate]:
        """Verify ``X-Twilio-Signature`` and read the message's status.

        Raises `CallbackRefused` when the signature is missing or wrong (or the callback
        names another account), and `ValueError` when a signed callback has no message
        id or status.
        """
        self._verify(request)
        sid = request.value("MessageSid", "SmsSid")
        word = (request.value("MessageStatus", "SmsStatus") or "").strip().lower()
        if not sid or not word:
            raise ValueError("the callback has no MessageSid or MessageStatus")
        if word in INBOUND_STATUSES:
            return []
        code = request.value("ErrorCode")
        # Twilio adds Price and PriceUnit to some status callbacks; most carry none.
        price, unit = _price(request.value("Price"), request.value("PriceUnit"))
        return [StatusUpdate(sid=sid, status=STATUS_MAP.get(word, "sent"), provider_status=word,
                             error_code=code or None, receiver=request.value("To"),
                             price=price, price_unit=unit)]

    def parse_inbound(self, request: CallbackRequest) -> list[InboundMessage]:
        """Verify ``X-Twilio-Signature`` and read the message a person sent to our number.

        The sender is ``From``, the text ``Body``, and ``OptOutType`` (``STOP``, ``START``,
        ``HELP``) Twilio's own reading when Advanced Opt-Out is on. Raises
        `CallbackRefused` like `parse_status_callback`, and `ValueError` when a signed
        post has no ``From``.
        """
        self._verify(request)
        sender = (request.value("From") or "").strip()
        if not sender:
            raise ValueError("the inbound message has no From")
        return [InboundMessage(sender=sender, body=request.value("Body") or "",
                               opt_out_type=request.value("OptOutType"))]

    def _verify(self, request: CallbackRequest) -> None:
        given = request.headers.get("x-twilio-signature")
        token = self._verify_token.value
        if request.json is not None or "bodysha256=" in request.url.lower():
            valid = signature.is_valid(token, request.url, {}, given, body=request.body)
        else:
            valid = signature.is_valid(token, request.url, request.form, given)
        if not token or not valid:
            raise CallbackRefused("X-Twilio-Signature is missing or does not match")
        account = request.value("AccountSid")
        if account is not None and account != self.account_sid:
            raise CallbackRefused("the callback is for another Twilio account")

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()


def _credentials(env: Mapping[str, str], account_sid: str,
                 callbacks: bool) -> tuple[tuple[str, str], str | None]:
    """The Basic auth pair for the API, and the auth token that verifies callbacks."""
    token = setting(env, "TWILIO_AUTH_TOKEN")
    key_sid = setting(env, "TWILIO_API_KEY_SID")
    key_secret = setting(env, "TWILIO_API_KEY_SECRET")
    if key_sid is None and key_secret is None:
        if token is None:
            raise ConfigError(
                "TWILIO_AUTH_TOKEN is required for the twilio provider "
                "(or TWILIO_API_KEY_SID with TWILIO_API_KEY_SECRET)"
            )
        _check_secret("TWILIO_AUTH_TOKEN", token)
        return (account_sid, token), token
    if callbacks and token is None:
        raise ConfigError(
            "TWILIO_AUTH_TOKEN is required when PUBLIC_BASE_URL is set, even with an API key: "
            "only the auth token verifies X-Twilio-Signature on status callbacks"
        )
    # Two credentials set at once would leave the operator guessing which one is used;
    # with status callbacks on, the key sends and the token only verifies.
    if token is not None and not callbacks:
        raise ConfigError(
            "TWILIO_AUTH_TOKEN and TWILIO_API_KEY_SID/TWILIO_API_KEY_SECRET are both set; "
            "set only one kind of credential (both only with PUBLIC_BASE_URL: the token then "
            "verifies status callbacks)"
        )
    if token is not None:
        _check_secret("TWILIO_AUTH_TOKEN", token)
    if key_sid is None:
        raise ConfigError("TWILIO_API_KEY_SID is required when TWILIO_API_KEY_SECRET is set")
    if key_secret is None:
        raise ConfigError("TWILIO_API_KEY_SECRET is required when TWILIO_API_KEY_SID is set")
    if not _API_KEY_SID.fullmatch(key_sid):
        raise ConfigError("TWILIO_API_KEY_SID must be SK followed by 32 hex characters")
    _check_secret("TWILIO_API_KEY_SECRET", key_secret)
    return (key_sid, key_secret), token


def _check_secret(name: str, value: str) -> None:
    if not _SECRET.fullmatch(value):
        raise ConfigError(f"{name} must be printable ASCII with no spaces or line breaks")


def _success_object(answer: ProviderAnswer) -> dict[str, Any]:
    """Return the JSON object of a 2xx answer.

    Raises the mapped `ProviderError` for any other status, and `ProviderUnavailable`
    when the body is not a JSON object.
    """
    if not 200 <= answer.status < 300:
        raise _error(answer)
    data = answer.json()
    if not isinstance(data, dict):
        raise _unreadable(answer, "answer is not a JSON object")
    return data


def _unreadable(answer: ProviderAnswer, what: str) -> ProviderUnavailable:
    return ProviderUnavailable(
        f"{NAME} {what}", http_status=answer.status, request_id=answer.request_id
    )


def _error(answer: ProviderAnswer) -> ProviderError:
    """Map a failed answer (body ``{"code", "message", "more_info", "status"}``) to an error."""
    code: int | None = None
    reason = ""
    try:
        data = answer.json()
    except ProviderUnavailable:
        data = None
    if isinstance(data, dict):
        code = _code(data.get("code"))
        if isinstance(data.get("message"), str):
            reason = one_line(data["message"])
    if not reason:
        reason = f"answered HTTP {answer.status}"
    # 20429 means the request was never processed, whatever status carries it.
    if code == RATE_LIMIT_CODE and answer.status != 429:
        return ProviderRateLimited(
            f"{NAME} error {code}: {reason}",
            provider_code=code,
            http_status=answer.status,
            request_id=answer.request_id,
            retry_after=answer.retry_after,
        )
    error = error_for_status(answer, reason, code)
    if code == UNSUBSCRIBED_CODE and type(error) is MessageRejected:
        return ReceiverUnsubscribed(error.message, provider_code=code, http_status=answer.status,
                                    request_id=answer.request_id)
    return error


def _code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value) and len(value) <= 9:
        return int(value)
    return None


def _segments(value: object) -> int | None:
    # Twilio sends a string that is "0" until it has counted; None lets the core count.
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = _code(value.strip())
    return value if isinstance(value, int) and value > 0 else None


def _date_created(value: object) -> dt.datetime:
    """Read Twilio's RFC 2822 ``date_created`` as aware UTC; now when absent or unreadable.

    The message has gone by then, so no value may turn the receipt into an error: one
    that does not read as a UTC time from `EARLIEST` on gives the current time.
    """
    if isinstance(value, str) and value.isascii():
        try:
            when = email.utils.parsedate_to_datetime(value)
            # RFC 2822 "-0000" parses as naive: the time is UTC with no zone claimed.
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            when = when.astimezone(dt.UTC)
        except (TypeError, ValueError, IndexError, OverflowError):
            when = None
        if when is not None and when >= EARLIEST:
            return when
    return dt.datetime.now(dt.UTC)


def _price(value: object, unit: object) -> tuple[str | None, str | None]:
    """Twilio's price (a negative string such as ``"-0.00750"``, null until known) as the
    plugin API wants it: the digits as written, sign dropped, with its currency."""
    amount = decimal_amount(value)
    if amount is None or not isinstance(value, str) or not isinstance(unit, str) or not unit.strip():
        return None, None
    return value.strip().lstrip("-"), unit.strip().upper()

"""The `kaleyra` provider: sends SMS through the kaleyra.io v1 Messages REST API."""

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
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
)
from sms_service.provider import Balance, CallbackRequest, Message, Provider, Receipt, StatusUpdate
from sms_service.provider_http import (
    ProviderAnswer,
    ProviderHTTP,
    base_url_setting,
    error_for_status,
)
from sms_service.provider_values import decimal_amount, one_line, setting
from sms_service.scrub import Scrubber, scrub_error

log = logging.getLogger(__name__)

NAME = "kaleyra"
# The key of `Message.template_ids` (the template's providerIds.kaleyra) this plugin sends.
TEMPLATE_ID = "template_id"
DEFAULT_BASE_URL = "https://api.kaleyra.io"
SMS_TYPES = ("DEFAULT", "OTP", "TXN", "MKT")
# UNCONFIRMED: Kaleyra documents a billing/usage API without a public path or field
# names. Its sibling platform APIs live under /api/v1/<sid>/ and wrap records in a
# "data" list, so the defaults follow that pattern; both are overridable.
DEFAULT_BALANCE_PATH = "/api/v1/{sid}/billing"
DEFAULT_BALANCE_FIELD = "data.balance"
CURRENCY_KEYS = ("currency", "currency_code", "currency_symbol")
MAX_CODE_CHARS = 50
# An earlier createdDateTime is a placeholder (0001-01-01...), not when Kaleyra took the
# message; it would also print as a year of fewer than four digits.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# Kaleyra's delivery-report words -> the service's normalised status (SPEC section 10).
# Upper-cased before the look-up; anything else that is not final reads as "sent".
# UNCONFIRMED: Kaleyra's public pages list these words but not the whole set.
STATUS_MAP = {
    "DELIVRD": "delivered", "DELIVERED": "delivered",
    "UNDELIV": "undelivered", "UNDELIVERED": "undelivered", "EXPIRED": "undelivered",
    "REJECTD": "undelivered", "REJECTED": "undelivered",
    "NOT-SENT": "failed", "NOT SENT": "failed", "FAILED": "failed",
}
# UNCONFIRMED field names of the default report: each is looked for in this order.
ID_FIELDS = ("id", "message_id", "sid")
STATUS_FIELDS = ("status", "message_status", "dlr_status")
CODE_FIELDS = ("error_code", "trace", "trace_code", "reason")
NUMBER_FIELDS = ("to", "recipient", "mobile", "number")
# The send answers a message id ("<uuid>"), its report may name a recipient's part of
# it ("<uuid>:1"): both mean the message the service recorded.
_PART_SUFFIX = re.compile(r":[0-9]{1,4}$")
MAX_REPORTS = 100

try:
    _VERSION = metadata.version("sms-service-kaleyra")
except metadata.PackageNotFoundError:  # running from a checkout that is not installed
    _VERSION = "0+unknown"


class KaleyraProvider(Provider):
    """Sends through kaleyra.io; reads only ``KALEYRA_*`` variables.

    Authenticates with the ``api-key`` header; the account SID is in every URL.
    Thread-safe: all state is built once in ``__init__``.
    """

    PLUGIN_API = (1, 3)

    # Kaleyra does not sign its reports: the service gives it a callback URL carrying a
    # secret token, and checks that token before this plugin sees a report.
    callbacks_signed = False

    def __init__(self, env: Mapping[str, str], *, timeout: float, callback_url: str | None = None) -> None:
        """Read and check the ``KALEYRA_*`` variables and build the pooled client.

        Raises `ConfigError` naming the variable that is missing or wrong; the message
        never contains a secret.
        """
        super().__init__(env, timeout=timeout, callback_url=callback_url)
        api_key = _token(env, "KALEYRA_API_KEY")
        self._scrubber = Scrubber([callback_url, api_key])
        self.sid = _token(env, "KALEYRA_SID")
        base_url = base_url_setting(env, "KALEYRA_BASE_URL", DEFAULT_BASE_URL)
        quoted_sid = urllib.parse.quote(self.sid, safe="")
        self.messages_url = f"{base_url}/v1/{quoted_sid}/messages"
        self.balance_url = base_url + _balance_path(env).replace("{sid}", quoted_sid)
        self.sms_type = _sms_type(env)
        self.balance_field = _dotted(env, "KALEYRA_BALANCE_FIELD", DEFAULT_BALANCE_FIELD)
        currency_field = setting(env, "KALEYRA_BALANCE_CURRENCY_FIELD")
        self.currency_field = (
            _dotted(env, "KALEYRA_BALANCE_CURRENCY_FIELD", "") if currency_field else None
        )
        self._http = ProviderHTTP(
            NAME,
            timeout=timeout,
            headers={
                "api-key": api_key,
                "Accept": "application/json",
                "User-Agent": f"sms-service-kaleyra/{_VERSION}",
            },
        )

    def __repr__(self) -> str:
        return f"KaleyraProvider(sid={self.sid!r}, messages_url={self.messages_url!r})"

    def send(self, message: Message) -> Receipt:
        """Hand the message to Kaleyra and return its receipt (status ``queued``).

        Raises `MessageRejected` (Kaleyra refused the message, including a 2xx answer
        that carries an error), `ProviderRateLimited` (HTTP 429, with ``retry_after``
        when given), `ProviderAuthError` (401/403), `ProviderUnreachable` (no
        connection: nothing was sent), `ProviderUnavailable` (5xx, connection lost, not
        JSON, or no message id) or `ProviderTimeout`.
        """
        try:
            return self._send(message)
        except ProviderError as exc:
            # An answer may echo what it was sent: the callback URL (its token forges
            # callbacks) or a credential never reach an error text.
            scrub_error(exc, self._scrubber)
            raise

    def _send(self, message: Message) -> Receipt:
        form = {"to": message.receiver, "sender": message.sender, "body": message.body}
        if self.sms_type:
            form["type"] = self.sms_type
        template_id = message.template_ids.get(TEMPLATE_ID)
        if template_id:  # India DLT: the registered template the message matches (SPEC section 16)
            form["template_id"] = template_id
        if message.status_callback:
            form["callback"] = json.dumps({"url": message.status_callback, "method": "POST"})
        answer = self._http.request("POST", self.messages_url, data=form)
        if not 200 <= answer.status < 300:
            raise _error(answer)
        data = _json_object(answer)
        if data.get("error"):
            # Kaleyra can report a refusal inside a 2xx answer; nothing was queued.
            code, reason = _details(data, answer.status)
            raise MessageRejected(
                _text(code, reason),
                provider_code=code,
                http_status=answer.status,
                request_id=answer.request_id,
            )
        sid = _message_id(data)
        if sid is None:
            raise _unreadable(answer, "answer lacks the message id")
        # Kaleyra reports no status and no segment count at send time (its totalCount
        # counts recipients), so the core counts segments itself.
        return Receipt(
            sid=sid,
            status="queued",
            date_event=_created(data.get("createdDateTime")),
            num_segments=None,
        )

    def balance(self) -> Balance:
        """Return the prepaid balance read from ``KALEYRA_BALANCE_PATH``.

        Raises `ProviderAuthError` (401/403), `ProviderRateLimited` (429),
        `ProviderUnavailable` (any other failure, or no readable amount at
        ``KALEYRA_BALANCE_FIELD``) or `ProviderTimeout`.
        """
        try:
            return self._balance()
        except ProviderError as exc:
            scrub_error(exc, self._scrubber)
            raise

    def _balance(self) -> Balance:
        answer = self._http.request("GET", self.balance_url)
        if not 200 <= answer.status < 300:
            raise _balance_error(answer)
        data = _json_object(answer)
        value, holder = _lookup(data, self.balance_field)
        amount = decimal_amount(value)
        if amount is None:
            raise _unreadable(
                answer, "balance answer lacks a readable amount at KALEYRA_BALANCE_FIELD"
            )
        return Balance(amount=amount, currency=self._currency(data, holder))

    def parse_status_callback(self, request: CallbackRequest) -> list[StatusUpdate]:
        """Read Kaleyra delivery reports, tolerantly (the URL's token was checked already).

        Takes a JSON object, a list of them, an object with such a list under ``data``,
        or form fields. The id is read from ``id``, ``message_id`` or ``sid``, the word
        from ``status``, ``message_status`` or ``dlr_status``, and kept as it came in
        ``provider_status``. Reports without both are skipped. Raises `ValueError` when
        nothing in the body is a report.
        """
        if request.form:
            reports: list[Any] = [{name: values[0] for name, values in request.form.items() if values}]
        elif isinstance(request.json, list):
            reports = request.json
        elif isinstance(request.json, dict):
            data = request.json.get("data")
            reports = data if isinstance(data, list) and data else [request.json]
        else:
            raise ValueError("a Kaleyra report is a JSON object or form fields")
        updates = []
        for report in reports[:MAX_REPORTS]:
            update = _report(report) if isinstance(report, dict) else None
            if update is not None:
                updates.append(update)
        return updates

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def _currency(self, data: dict[str, Any], holder: dict[str, Any] | None) -> str:
        # The guard only compares the amount, so a missing currency label is no reason
        # to refuse every send.
        if self.currency_field is not None:
            value, _ = _lookup(data, self.currency_field)
        else:
            candidates = (holder.get(key) for key in CURRENCY_KEYS) if holder else ()
            value = next((c for c in candidates if isinstance(c, str) and c.strip()), None)
        return one_line(value)[:16] if isinstance(value, str) else ""


# -- configuration --------------------------------------------------------------------


def _token(env: Mapping[str, str], name: str) -> str:
    value = setting(env, name)
    if value is None:
        raise ConfigError(f"{name} is required for the kaleyra provider")
    # Headers and URL paths cannot carry these; a stray newline or quote from a
    # secrets file is the usual cause, so say so without echoing the value.
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(
            f"{name} must not contain whitespace or control characters "
            "(check for stray newlines or quotes)"
        )
    return value


def _sms_type(env: Mapping[str, str]) -> str | None:
    value = setting(env, "KALEYRA_SMS_TYPE")
    if value is None:
        return None
    value = value.strip().upper()
    if value not in SMS_TYPES:
        raise ConfigError(f"KALEYRA_SMS_TYPE must be one of {', '.join(SMS_TYPES)}")
    return value


def _balance_path(env: Mapping[str, str]) -> str:
    value = setting(env, "KALEYRA_BALANCE_PATH") or DEFAULT_BALANCE_PATH
    # The path is appended to KALEYRA_BASE_URL; "//" would let it name another host and
    # send the API key there.
    if not value.startswith("/") or value.startswith("//") or "://" in value:
        raise ConfigError("KALEYRA_BALANCE_PATH must be a path starting with / such as /api/v1/{sid}/billing")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError("KALEYRA_BALANCE_PATH must not contain whitespace or control characters")
    if "{" in value.replace("{sid}", "") or "}" in value.replace("{sid}", ""):
        raise ConfigError("KALEYRA_BALANCE_PATH may use only the {sid} placeholder")
    return value


def _dotted(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    value = setting(env, name) or default
    keys = tuple(value.split("."))
    if not all(keys) or any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(f"{name} must be a dotted path of JSON keys such as data.balance")
    return keys


# -- answers --------------------------------------------------------------------------


def _json_object(answer: ProviderAnswer) -> dict[str, Any]:
    """Return the JSON object of an answer; raises `ProviderUnavailable` otherwise."""
    data = answer.json()
    if not isinstance(data, dict):
        raise _unreadable(answer, "answer is not a JSON object")
    return data


def _unreadable(answer: ProviderAnswer, what: str) -> ProviderUnavailable:
    return ProviderUnavailable(f"{NAME} {what}", http_status=answer.status, request_id=answer.request_id)


def _quiet_json(answer: ProviderAnswer) -> object:
    try:
        return answer.json()
    except ProviderUnavailable:
        return None


def _error(answer: ProviderAnswer) -> ProviderError:
    """Map a failed send answer to the core's error for its status."""
    code, reason = _details(_quiet_json(answer), answer.status)
    return error_for_status(answer, reason, code)


def _balance_error(answer: ProviderAnswer) -> ProviderError:
    """Map a failed balance answer; a 4xx other than auth or 429 is no rejected message."""
    code, reason = _details(_quiet_json(answer), answer.status)
    if answer.status in (401, 403) or answer.status >= 500:
        return error_for_status(answer, reason, code)
    if answer.status == 429:
        return ProviderRateLimited(
            _text(code, reason), provider_code=code, http_status=429,
            request_id=answer.request_id, retry_after=answer.retry_after,
        )
    # A 404 here most likely means KALEYRA_BALANCE_PATH is wrong for this account.
    return ProviderUnavailable(
        f"{NAME} balance lookup failed: {_text(code, reason)}",
        provider_code=code, http_status=answer.status, request_id=answer.request_id,
    )


def _details(data: object, status: int) -> tuple[str | int | None, str]:
    """Read Kaleyra's code and reason from an error body of any known shape.

    Seen: ``{"code", "message"}`` at the top level, an ``error`` object with ``code``
    and ``message`` or with per-field strings (``{"to": "invalid number"}``), and an
    ``error`` string.
    """
    code: str | int | None = None
    message = ""
    extra: list[str] = []
    if isinstance(data, dict):
        code = _code(data.get("code"))
        message = _string(data.get("message"))
        error = data.get("error")
        if isinstance(error, dict):
            if code is None:
                code = _code(error.get("code"))
            if not message:
                message = _string(error.get("message"))
            extra = [
                f"{key}: {value.strip()}" for key, value in error.items()
                if key not in ("code", "message") and isinstance(value, str) and value.strip()
            ]
        elif isinstance(error, str) and error.strip():
            if message:
                extra = [error.strip()]
            else:
                message = error
    reason = message.strip()
    if extra:
        reason = f"{reason} ({'; '.join(extra)})" if reason else "; ".join(extra)
    return code, one_line(reason or f"answered HTTP {status}")


def _code(value: object) -> str | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = one_line(value)
        return text[:MAX_CODE_CHARS] or None
    return None


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _text(code: str | int | None, reason: str) -> str:
    return f"{NAME} error {code}: {reason}" if code is not None else f"{NAME}: {reason}"


def message_id(raw: str) -> str:
    """The one id of a Kaleyra message: `raw` trimmed, without a recipient's ``:<part>`` suffix.

    The send's answer may name the message (``<uuid>``) or only its recipient's part
    (``data[0].message_id``: ``<uuid>:1``), and reports name either: the record is stored
    under this id and every report is matched under it. An id that is nothing but a
    suffix is kept whole.
    """
    text = raw.strip()
    return _PART_SUFFIX.sub("", text) or text


def _message_id(data: dict[str, Any]) -> str | None:
    """`message_id` of ``id``, else of ``data[0].message_id``; None when neither is a usable string."""
    candidates: list[object] = [data.get("id")]
    records = data.get("data")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        candidates.append(records[0].get("message_id"))
    for value in candidates:
        if isinstance(value, str) and value.strip() and value.isprintable():
            return message_id(value)
    return None


def _created(value: object) -> dt.datetime:
    """Read ``createdDateTime`` (``2022-11-23 15:10:53+00:00``) as aware UTC; now if unreadable.

    The message has gone by then, so no value may turn the receipt into an error: one
    that does not read as a UTC time from `EARLIEST` on gives the current time.
    """
    if isinstance(value, str) and value.strip() and value.isascii():
        try:
            when = dt.datetime.fromisoformat(value.strip())
            # Kaleyra documents a +00:00 offset; a bare time is taken as that too.
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.UTC)
            # Moving an edge of the calendar (0001-01-01 00:30+01:00) to UTC overflows.
            when = when.astimezone(dt.UTC)
        except (ValueError, OverflowError):
            when = None
        if when is not None and when >= EARLIEST:
            return when
    return dt.datetime.now(dt.UTC)


def _lookup(data: object, keys: tuple[str, ...]) -> tuple[object, dict[str, Any] | None]:
    """Follow a dotted path; return the value and the object that holds it.

    A numeric key indexes a list. A name met on a list applies to its first element,
    because Kaleyra's platform APIs wrap single records in a ``data`` list: the same
    path then fits both shapes.
    """
    node: object = data
    holder: dict[str, Any] | None = None
    for key in keys:
        if isinstance(node, list) and key.isascii() and key.isdigit():
            index = int(key)
            node = node[index] if index < len(node) else None
            holder = None
            continue
        if isinstance(node, list):
            node = node[0] if node else None
        if not isinstance(node, dict):
            return None, None
        holder = node
        node = node.get(key)
    return node, holder


# -- delivery reports -----------------------------------------------------------------


def _first(report: dict[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = report.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def normalise(word: str) -> str:
    """The service's status for a Kaleyra word: see `STATUS_MAP`; "sent" for any other."""
    return STATUS_MAP.get(" ".join(word.upper().split()), "sent")


def _report(report: dict[str, Any]) -> StatusUpdate | None:
    sid = _first(report, ID_FIELDS)
    word = _first(report, STATUS_FIELDS)
    if sid is None or word is None:
        return None
    number = _first(report, NUMBER_FIELDS)
    if number is not None and not number.startswith("+"):
        number = "+" + number  # Kaleyra writes numbers without the plus
    code = _first(report, CODE_FIELDS)
    return StatusUpdate(sid=message_id(sid), status=normalise(word), provider_status=word,
                        error_code=code, receiver=number,
                        opted_out=any(_is_opt_out(value) for value in (code, word)))


def _is_opt_out(word: str | None) -> bool:
    """Tell whether a report's trace (or status) is Kaleyra's ``OPT-OUT``: the receiver opted out."""
    return word is not None and re.sub(r"[\s_-]", "", word.upper()) == "OPTOUT"

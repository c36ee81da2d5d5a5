"""The plugin API: the one thing a third-party provider distribution depends on.

A provider is a class registered under the setuptools entry-point group
``sms_service.providers``; the entry-point name is the ``SERVICE_PROVIDER`` value.
The service builds it once per worker with ``cls(env, timeout=...)`` and then calls
``send`` from many threads at once, so a provider must be thread-safe.

Delivery status is optional: a provider that overrides `Provider.parse_status_callback`
is built with ``callback_url=`` as well (when ``PUBLIC_BASE_URL`` is set), finds that
URL in each `Message`, and turns the callbacks the service receives into
`StatusUpdate` values, or refuses them with `CallbackRefused`.

Inbound messages are optional too: a provider that overrides `Provider.parse_inbound`
turns the replies people send to the service's number into `InboundMessage` values,
from which the service learns opt-outs (STOP) and opt-ins (START). A provider that
learns an opt-out while sending raises `ReceiverUnsubscribed`; one that reports it on a
delivery report sets ``StatusUpdate.opted_out``.

Plugin API 1.2 (SPEC sections 16 and 18) adds, all optional: `Message.template_ids`
(the ids a provider needs for a registered template, such as India's DLT ids), a
price on `Receipt` and `StatusUpdate` (``price``: a positive decimal string as the
provider wrote it, sign dropped; ``price_unit``: ISO 4217), and `Provider.fetch_status`,
which looks one message's status up at the provider (the reconciler's lookups).
Plugin API 1.3 adds `Provider.signs_callbacks(env)`, for a provider whose signing is a
setting of the account (Vonage signs only when given a signature secret).

Failover (SPEC section 13): ``SERVICE_PROVIDER`` may list several providers, tried in
order. The service moves to the next one only when the error a provider raised proves
no SMS went out, ``ProviderError.nothing_sent``: True for `ProviderUnreachable`,
`ProviderAuthError` and `ProviderRateLimited` (and for `MessageRejected`, which still
never fails over, since the message would fail anywhere); False for `ProviderTimeout`
and `ProviderUnavailable`. Raise the class that says what happened; pass
``nothing_sent=True`` only for an answer the provider documents as "not processed".
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from sms_service.exceptions import (  # noqa: F401  (re-exported for plugins)
    CallbackRefused,
    ConfigError,
    MessageRejected,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
    ReceiverUnsubscribed,
)
from sms_service.phone import mask_number

ENTRY_POINT_GROUP = "sms_service.providers"

#: The version of this plugin API, (major, minor): a minor adds, a major breaks (see
#: docs/plugins.md, "Stability"). A plugin states the version it was built for in
#: `Provider.PLUGIN_API`; the service refuses to load one with another major or a
#: newer minor.
PLUGIN_API = (1, 3)


@dataclass(frozen=True)
class Message:
    """One SMS to send, already validated by the service.

    `receiver` is canonical E.164 (``+`` and digits); `num_segments` and `encoding`
    (``GSM-7`` or ``UCS-2``) are the service's own count of the body.
    `status_callback` is the URL at which the provider should report this message's
    status, or None (status off, or a provider without status support).
    """

    sender: str
    receiver: str
    body: str
    num_segments: int
    encoding: str
    status_callback: str | None = None
    #: The template's ids for this provider (``providerIds[<entry-point name>]`` of the
    #: template the message was rendered from, e.g. ``{"template_id": "1107..."}`` for a
    #: DLT template on Kaleyra); empty when the message used no template or the template
    #: has no ids for this provider. Plugin API 1.2.
    template_ids: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        # Keeps bodies and full numbers out of any log line or traceback that prints it.
        return (
            f"Message(sender={self.sender!r}, receiver={mask_number(self.receiver)!r}, "
            f"body=<{len(self.body)} chars>, num_segments={self.num_segments})"
        )


@dataclass(frozen=True)
class Receipt:
    """What the provider said when it accepted a message.

    `num_segments` is the provider's count, or None (or 0) when it gave none; the
    service then uses its own. `date_event` must be timezone-aware.
    """

    sid: str
    status: str
    date_event: dt.datetime
    num_segments: int | None = None
    #: What the provider charged, when its answer says (plugin API 1.2): a positive
    #: decimal string as the provider wrote it, sign dropped (``"0.0075"``), and its
    #: ISO 4217 currency (``"USD"``). None when unknown.
    price: str | None = None
    price_unit: str | None = None


@dataclass(frozen=True)
class Balance:
    """A provider account balance."""

    amount: Decimal
    currency: str


@dataclass(frozen=True)
class CallbackRequest:
    """A status callback as the service received it, free of any web framework.

    `url` is the public URL the provider called (``PUBLIC_BASE_URL``, the route's path
    and the query string as received; never built from ``Host`` or ``X-Forwarded-*``).
    `headers` has lower-case names. `form` holds each form field's values in order
    (empty unless the body is form-encoded); `json` the decoded body when it is JSON.
    `body` is the raw body, at most 16 KiB. A provider that calls back with GET (Vonage
    can) leaves `form`, `json` and `body` empty: its fields are in the query of `url`.
    """

    url: str
    headers: Mapping[str, str]
    body: bytes
    form: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    json: Any = None

    def value(self, *names: str) -> str | None:
        """The first value of the first of `names` present in the form or the JSON object."""
        for name in names:
            values = self.form.get(name)
            if values:
                return values[0]
            if isinstance(self.json, dict) and isinstance(self.json.get(name), str | int):
                return str(self.json[name])
        return None


@dataclass(frozen=True)
class StatusUpdate:
    """One status a provider reported for one message.

    `status` is the normalised word: ``queued``, ``sent``, ``delivered``,
    ``undelivered`` or ``failed``; `provider_status` the provider's own word;
    `error_code` the provider's code, if any. `receiver`, when the callback names it,
    is E.164: the service keeps only its masked form and its country.
    """

    sid: str
    status: str
    provider_status: str
    error_code: str | None = None
    receiver: str | None = None
    #: True when the report says the receiver opted out (Kaleyra's ``OPT-OUT`` trace):
    #: the service then puts `receiver` on its suppression list.
    opted_out: bool = False
    #: The price of the message when the report gives one (plugin API 1.2), as in
    #: `Receipt`: a positive decimal string, sign dropped, and its ISO 4217 currency.
    price: str | None = None
    price_unit: str | None = None


@dataclass(frozen=True)
class InboundMessage:
    """One SMS a person sent to the service's number, as the provider reported it.

    `sender` is that person's number in E.164; `body` the text. `opt_out_type` is the
    provider's own reading of it when it has one (Twilio's ``OptOutType``: ``STOP``,
    ``START`` or ``HELP``), else None: the service then reads the keywords itself.
    """

    sender: str
    body: str
    opt_out_type: str | None = None

    def __repr__(self) -> str:
        return (f"InboundMessage(sender={mask_number(self.sender)!r}, body=<{len(self.body)} chars>, "
                f"opt_out_type={self.opt_out_type!r})")


class Provider(abc.ABC):
    """Base class of every provider plugin.

    Subclasses read their own ``<NAME>_*`` keys from `env` in ``__init__`` and raise
    `ConfigError` (naming the variable) when one is missing or wrong. `timeout` is
    ``PROVIDER_TIMEOUT`` in seconds: the whole of one provider call must fit in it.
    """

    #: The plugin API version the plugin was built for, (major, minor); None (not
    #: stated) loads as 1.0. Set it in every plugin: ``PLUGIN_API = (1, 3)`` (1.1:
    #: `ProviderError(nothing_sent=...)`; 1.2: `Message.template_ids`, prices,
    #: `fetch_status`; 1.3: `signs_callbacks`; a plugin that uses none of them may say (1, 0)).
    PLUGIN_API: ClassVar[tuple[int, int] | None] = None

    #: False for a provider that cannot sign its callbacks (Kaleyra): the service then
    #: puts a secret token derived from CALLBACK_SECRET in the callback URL, and refuses
    #: callbacks without it before the plugin sees them. A provider whose signing depends
    #: on its configuration overrides `signs_callbacks` and sets this on the instance.
    callbacks_signed: ClassVar[bool] = True

    #: The answer to an inbound post, as (content type, body): Twilio reads TwiML, and an
    #: empty ``<Response/>`` sends no reply.
    inbound_answer: ClassVar[tuple[str, bytes]] = ("text/plain", b"")

    def __init__(self, env: Mapping[str, str], *, timeout: float, callback_url: str | None = None) -> None:
        self.timeout = timeout
        self.callback_url = callback_url

    @abc.abstractmethod
    def send(self, message: Message) -> Receipt:
        """Hand `message` to the provider and return its receipt.

        Raises a `ProviderError` subclass when the provider did not accept it:
        `MessageRejected`, `ProviderRateLimited`, `ProviderAuthError`,
        `ProviderUnreachable`, `ProviderUnavailable` or `ProviderTimeout`. A send must
        never be retried unless the request provably never left this process. The
        class decides failover: only an error whose ``nothing_sent`` is True (and that
        is no `MessageRejected`) lets the service try the next provider.
        """

    def balance(self) -> Balance:
        """Return the account balance; optional, needed for ``<NAME>_EMPTY_BALANCE_CHECK``.

        Raises a `ProviderError` subclass when it cannot be read. An empty or unreadable
        balance moves a send to the next provider, when there is one.
        """
        raise NotImplementedError

    @classmethod
    def supports_balance(cls) -> bool:
        """Tell whether this provider overrides `balance`."""
        return cls.balance is not Provider.balance

    def parse_status_callback(self, request: CallbackRequest) -> list[StatusUpdate]:
        """Turn one callback into status updates; optional (delivery status support).

        Raises `CallbackRefused` when the request is not authentic (checked before
        anything else), and `ValueError` when it is authentic but unreadable. Return an
        empty list for a callback that carries no message status.
        """
        raise NotImplementedError

    @classmethod
    def signs_callbacks(cls, env: Mapping[str, str]) -> bool:
        """Tell whether this provider, configured by `env`, signs its callbacks (plugin API 1.3).

        The service asks before building the provider: False gives it a callback URL
        carrying the CALLBACK_SECRET token, which the service checks. The default is
        `callbacks_signed`. Override it when signing is a setting of the account (Vonage
        signs only with a signature secret), and set ``self.callbacks_signed`` to the same
        answer in ``__init__``: the service refuses to start when the two differ.
        """
        return cls.callbacks_signed

    @classmethod
    def supports_status(cls) -> bool:
        """Tell whether this provider overrides `parse_status_callback`."""
        return cls.parse_status_callback is not Provider.parse_status_callback

    def parse_inbound(self, request: CallbackRequest) -> list[InboundMessage]:
        """Turn one inbound post into the messages people sent; optional (opt-out support).

        Posted to ``{PUBLIC_BASE_URL}/callbacks/<name>/inbound``; a provider that cannot
        sign gets the same URL token as its status callbacks, checked before this is
        called. Raises `CallbackRefused` when the request is not authentic (checked
        before anything else), and `ValueError` when it is authentic but unreadable.
        """
        raise NotImplementedError

    @classmethod
    def supports_inbound(cls) -> bool:
        """Tell whether this provider overrides `parse_inbound`."""
        return cls.parse_inbound is not Provider.parse_inbound

    def fetch_status(self, sid: str) -> StatusUpdate:
        """Look the message `sid` up at the provider: its current status (plugin API 1.2).

        Optional: the reconciler (SPEC section 18) asks providers that implement it
        about messages whose callbacks were lost. Returns one `StatusUpdate` (with the
        price when the provider knows it). Raises `ProviderRateLimited` when the
        provider throttles lookups (the reconciler backs off), another `ProviderError`
        subclass when the lookup fails, and `LookupError` when the provider does not
        know `sid`.
        """
        raise NotImplementedError

    @classmethod
    def supports_fetch_status(cls) -> bool:
        """Tell whether this provider overrides `fetch_status`."""
        return cls.fetch_status is not Provider.fetch_status

    def close(self) -> None:  # noqa: B027  (optional hook, deliberately a no-op)
        """Release pooled connections; called when the worker stops."""


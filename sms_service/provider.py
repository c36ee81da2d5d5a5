"""The plugin API: the one thing a third-party provider distribution depends on.

A provider is a class registered under the setuptools entry-point group
``sms_service.providers``; the entry-point name is the ``SERVICE_PROVIDER`` value.
The service builds it once per worker with ``cls(env, timeout=...)`` and then calls
``send`` from many threads at once, so a provider must be thread-safe.
"""

from __future__ import annotations

import abc
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from sms_service.exceptions import (  # noqa: F401  (re-exported for plugins)
    ConfigError,
    MessageRejected,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
)
from sms_service.phone import mask_number

ENTRY_POINT_GROUP = "sms_service.providers"


@dataclass(frozen=True)
class Message:
    """One SMS to send, already validated by the service.

    `receiver` is canonical E.164 (``+`` and digits); `num_segments` and `encoding`
    (``GSM-7`` or ``UCS-2``) are the service's own count of the body.
    """

    sender: str
    receiver: str
    body: str
    num_segments: int
    encoding: str

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


@dataclass(frozen=True)
class Balance:
    """A provider account balance."""

    amount: Decimal
    currency: str


class Provider(abc.ABC):
    """Base class of every provider plugin.

    Subclasses read their own ``<NAME>_*`` keys from `env` in ``__init__`` and raise
    `ConfigError` (naming the variable) when one is missing or wrong. `timeout` is
    ``PROVIDER_TIMEOUT`` in seconds: the whole of one provider call must fit in it.
    """

    def __init__(self, env: Mapping[str, str], *, timeout: float) -> None:
        self.timeout = timeout

    @abc.abstractmethod
    def send(self, message: Message) -> Receipt:
        """Hand `message` to the provider and return its receipt.

        Raises a `ProviderError` subclass when the provider did not accept it:
        `MessageRejected`, `ProviderRateLimited`, `ProviderAuthError`,
        `ProviderUnavailable` or `ProviderTimeout`. A send must never be retried unless
        the request provably never left this process.
        """

    def balance(self) -> Balance:
        """Return the account balance; optional, needed for ``<NAME>_EMPTY_BALANCE_CHECK``.

        Raises a `ProviderError` subclass when it cannot be read.
        """
        raise NotImplementedError

    @classmethod
    def supports_balance(cls) -> bool:
        """Tell whether this provider overrides `balance`."""
        return cls.balance is not Provider.balance

    def close(self) -> None:  # noqa: B027  (optional hook, deliberately a no-op)
        """Release pooled connections; called when the worker stops."""


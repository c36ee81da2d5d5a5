"""Provider failover that never sends twice (SPEC section 13).

The providers of SERVICE_PROVIDER are tried in order. A send moves to the next one only
on proof that no SMS went out: the provider was never reached, refused our credentials
or throttled us (`ProviderError.nothing_sent`), its balance check says empty or unknown,
or its circuit is open. After a timeout, a 5xx, an unreadable answer or a rejection of
the message itself it never moves on: the SMS may have gone, or would fail anywhere.

With one provider there is nothing to fail over to: no circuit, no storage operation,
the same answers as before failover existed.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sms_service import metrics
from sms_service.circuit import Admission, Circuit
from sms_service.config import Settings, secret_values
from sms_service.exceptions import (
    BalanceExhausted,
    BalanceUnavailable,
    MessageRejected,
    NoProviderAvailable,
    ProviderAuthError,
    ProviderError,
    SmsServiceError,
)
from sms_service.provider import Message, Provider, Receipt
from sms_service.scrub import Scrubber, scrub_error
from sms_service.status.service import StatusService
from sms_service.storage import Storage

log = logging.getLogger(__name__)

# Seconds a trial may hold its lease past its own two calls (balance and send, each
# bounded by PROVIDER_TIMEOUT): a worker that died mid-trial frees it after that.
TRIAL_LEASE_MARGIN_S = 5


@dataclass
class Route:
    """One configured provider, with what a send through it needs."""

    name: str
    provider: Provider
    balance_check: bool = False
    status: StatusService | None = None
    circuit: Circuit | None = None
    callback_url: str | None = None
    # Removes the callback URL, its token and every configured secret from this
    # provider's error texts before anyone (caller, log) sees them.
    scrubber: Scrubber | None = None
    # Label children bound once: looking them up costs a lock and a dict per call.
    accepted: Any = None
    segments: dict[str, Any] = field(default_factory=dict)
    durations: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.callback_url is None and self.provider.supports_status():
            self.callback_url = getattr(self.provider, "callback_url", None)
        if self.scrubber is None:
            self.scrubber = Scrubber([self.callback_url])
        self.accepted = metrics.MESSAGES_ACCEPTED.labels(self.name)
        self.segments = {enc: metrics.SEGMENTS.labels(self.name, enc) for enc in ("GSM-7", "UCS-2")}

    def observe(self, outcome: str, started: float) -> float:
        """Time one provider call under `outcome`; returns its seconds."""
        elapsed = time.perf_counter() - started
        child = self.durations.get(outcome)
        if child is None:
            child = self.durations[outcome] = metrics.PROVIDER_DURATION.labels(self.name, outcome)
        child.observe(elapsed)
        return elapsed

    def check_balance(self) -> None:
        """When this provider's balance check is on, refuse an empty or unknown balance.

        Raises `BalanceExhausted` or `BalanceUnavailable`.
        """
        if not self.balance_check:
            return
        try:
            balance = self.provider.balance()
        except ProviderError as exc:
            scrub_error(exc, self.scrubber)
            raise BalanceUnavailable(f"provider balance could not be read: {exc.message}") from None
        if balance.amount <= 0:
            raise BalanceExhausted("provider balance is exhausted; no message was sent")


def moves_on(exc: BaseException) -> bool:
    """Tell whether a failure proves no SMS went out and another provider may be tried.

    A rejection of the message itself is never one (the message would fail anywhere,
    or the receiver opted out), although nothing was sent.
    """
    if isinstance(exc, BalanceExhausted | BalanceUnavailable):
        return True
    return isinstance(exc, ProviderError) and exc.nothing_sent and not isinstance(exc, MessageRejected)


def counts_against_circuit(exc: BaseException) -> bool:
    """Tell whether a failure counts against the provider's circuit.

    Every provider-side failure does (unreachable, timeout, 5xx, unreadable answer,
    credentials, throttling, balance, a plugin's own error). A rejection of one message
    proves the provider works: counting it would let anyone open circuits by sending
    to invalid numbers.
    """
    return not isinstance(exc, MessageRejected)


class Failover:
    """Tries the routes in order; see the module docstring."""

    def __init__(self, routes: list[Route]) -> None:
        if not routes:
            raise ValueError("at least one provider is needed")
        self.routes = routes
        self.by_name = {route.name: route for route in routes}
        self._next = {route.name: routes[i + 1].name if i + 1 < len(routes) else "none"
                      for i, route in enumerate(routes)}

    def send(self, message: Message,
             template_ids: Mapping[str, Mapping[str, str]] | None = None,
             first_circuit: tuple[str, int] | None = None) -> tuple[Route, Receipt, float]:
        """Send `message` through the first route that takes it.

        `template_ids` maps a provider's name to its ids for the message's template: each
        provider gets its own in `Message.template_ids`, and no other's. `first_circuit` is
        the first route's `circuit_admit` answer when the guards' storage operation asked
        it already (None: the circuit is asked here).

        Returns the route that sent, its receipt and the seconds of its send call.
        Raises the failure that ended the attempt: one that never moves on at once, or,
        when every provider was unusable, the last one's own failure
        (`NoProviderAvailable` when every circuit was open).
        """
        failures: list[tuple[str, SmsServiceError]] = []
        for route in self.routes:
            admission: Admission | None = None
            if route.circuit is not None:
                if first_circuit is not None and route is self.routes[0]:
                    admission = route.circuit.admission(*first_circuit)
                else:
                    admission = route.circuit.admit()
                if admission is None:
                    self._moved(route, "circuit_open")
                    continue
            try:
                receipt, elapsed = self._through(route, message, template_ids)
            except Exception as exc:
                if isinstance(exc, ProviderError):
                    exc.provider = route.name  # the error's log line names who said it
                if admission is not None:
                    route.circuit.record(admission, ok=not counts_against_circuit(exc))
                if not moves_on(exc) or len(self.routes) == 1:
                    raise
                failures.append((route.name, exc))
                self._moved(route, exc.reason, exc)
                continue
            if admission is not None:
                route.circuit.record(admission, ok=True)
            return route, receipt, elapsed
        raise _exhausted(failures)

    def first_usable(self) -> Route:
        """The route `send` would try to send through now, changing nothing (POST /estimate).

        It skips what `send` would skip before calling a provider's send: an open circuit
        (read, no trial claimed; a half-open one counts as usable, one whose trial is in
        flight reads as open) and an empty or unknown balance. Raises what `send` would
        when no provider is usable.
        """
        failures: list[tuple[str, SmsServiceError]] = []
        for route in self.routes:
            if route.circuit is not None and route.circuit.state()[0] == "open":
                continue
            try:
                route.check_balance()
            except (BalanceExhausted, BalanceUnavailable) as exc:
                if len(self.routes) == 1:
                    raise
                failures.append((route.name, exc))
                continue
            return route
        raise _exhausted(failures)

    def _through(self, route: Route, message: Message,
                 template_ids: Mapping[str, Mapping[str, str]] | None = None) -> tuple[Receipt, float]:
        route.check_balance()
        if route.callback_url != message.status_callback:
            message = dataclasses.replace(message, status_callback=route.callback_url)
        if template_ids is not None:  # each provider its own ids, and never another's
            ids = template_ids.get(route.name) or {}
            if ids != message.template_ids:
                message = dataclasses.replace(message, template_ids=dict(ids))
        started = time.perf_counter()
        try:
            receipt = route.provider.send(message)
        except ProviderError as exc:
            route.observe(exc.reason, started)
            # The one place every plugin's error passes: a provider may echo the callback
            # URL (its token forges callbacks) or a credential.
            scrub_error(exc, route.scrubber)
            raise
        except Exception:
            route.observe("plugin_error", started)
            raise
        return receipt, route.observe("accepted", started)

    def _moved(self, route: Route, reason: str, exc: SmsServiceError | None = None) -> None:
        to = self._next[route.name]
        metrics.FAILOVERS.labels(route.name, to, reason).inc()
        fields = {"provider": route.name, "next_provider": to, "reason": reason}
        if isinstance(exc, ProviderError):
            fields.update(provider_code=exc.provider_code, provider_status=exc.http_status)
        if isinstance(exc, ProviderAuthError):
            # The operator must fix the credentials: the next provider hides the outage.
            log.error("provider refused our credentials; trying the next provider", extra=fields)
        elif exc is not None:
            log.warning("provider sent nothing; trying the next provider", extra=fields)


def _exhausted(failures: list[tuple[str, SmsServiceError]]) -> SmsServiceError:
    if not failures:
        return NoProviderAvailable(
            "every provider's circuit is open after repeated failures; nothing was sent")
    last = failures[-1][1]
    # The last provider's own failure decides the status (502, 429 with its Retry-After,
    # 503 for a balance); the message names what each provider said.
    error = copy.copy(last)
    error.message = "no provider could take the message, nothing was sent: " + "; ".join(
        f"{name}: {exc.message}" for name, exc in failures)
    error.args = (error.message,)
    return error


def build_failover(settings: Settings, providers: dict[str, Provider], storage: Storage,
                   first_status: StatusService) -> Failover:
    """The routes of every configured provider, in order, each with its own records.

    Circuits exist only when there is another provider to move to: a single provider
    keeps its path exactly as it was, with no storage operation added.
    """
    several = len(providers) > 1
    secrets = secret_values(settings)
    lease_ms = (2 * settings.provider_timeout + TRIAL_LEASE_MARGIN_S) * 1000
    routes = []
    for name, provider in providers.items():
        first = name == settings.provider
        status = first_status if first else StatusService(
            name, provider, storage, settings.message_ttl, settings.public_base_url, settings.callback_secret)
        circuit = Circuit(name, storage, settings.failover_failure_threshold,
                          settings.failover_reset_after_ms, lease_ms) if several else None
        balance_check = settings.balance_checks.get(name, settings.balance_check if first else False)
        url = getattr(provider, "callback_url", None) if provider.supports_status() else None
        routes.append(Route(name, provider, balance_check, status, circuit, url, Scrubber([*secrets, url])))
    return Failover(routes)

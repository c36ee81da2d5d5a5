"""Anti-pumping guards: global rate limit, destination policy, opt-outs, per-receiver delay,
segment budgets. (Each provider's balance check belongs to its route: sms_service.failover.)

They run before any provider call, in the order of SPEC section 6, and know nothing of
Flask: each raises a `GuardRejection` subclass (or `StorageUnavailable`) to refuse. One
pipeline (`Guards.admit`) serves /send, which consumes the delay and the budget, and
/estimate, which runs the very same checks without consuming anything.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING

from sms_service import metrics, phone
from sms_service.budgets import SegmentBudgets, Spend
from sms_service.config import Settings
from sms_service.durations import format_duration
from sms_service.exceptions import (
    DestinationRefused,
    MessageOverBudget,
    RateLimitExceeded,
    ReceiverSuppressed,
    ReceiverTooSoon,
    StorageUnavailable,
)
from sms_service.storage import Storage
from sms_service.storage.base import BudgetAsk

if TYPE_CHECKING:
    from sms_service.circuit import Circuit
from sms_service.suppression.service import SuppressionList

RATE_LIMIT_KEY = "send"


class Guards:
    """The guards of one worker, sharing state through `storage`."""

    def __init__(self, settings: Settings, storage: Storage) -> None:
        self.settings = settings
        self.storage = storage
        self._window_ms = math.ceil(settings.rate_limit_window_ms)
        self._reset_after_ms = math.ceil(settings.delay_reset_after * 1000)
        self.suppression = SuppressionList(storage)
        table = settings.segment_budgets
        self.budgets = SegmentBudgets(table, storage) if table is not None else None

    def admit(self, receiver: str, segments: int, *, consume: bool = True) -> Spend | None:
        """Run the guards that follow validation, in order: destination policy, opt-out,
        delay, segment budget (the providers' balance checks follow, per provider).

        With `consume` (a send) the delay and the budget are spent; without it (an
        estimate) each guard only says whether it would refuse, and nothing is counted,
        so the same send still passes afterwards. Returns the budget's `Spend` when one
        was counted, for the caller to refund should the send prove it sent nothing.
        Raises the first refusal's `GuardRejection`, or `StorageUnavailable`.
        """
        self.check_destination(receiver)
        self.check_suppression(receiver, consume=consume)
        country = phone.region_of(receiver) if self.budgets is not None else None
        if not consume or self.budgets is None or not self.budgets.applies_to(country):
            # Budgets off (or none for this country): one delay operation, as ever.
            self.check_delay(receiver, consume=consume)
            if self.budgets is not None:
                self.budgets.check(country, segments, consume=consume)
            return None
        # A refusal by the budget must not lengthen the receiver's wait, nor a refusal by
        # the delay spend the budget: peek at the delay, spend the budget, then take the
        # delay, giving the budget back when a concurrent send to this receiver won it.
        self.check_delay(receiver, consume=False)
        spend = self.budgets.check(country, segments, consume=True)
        try:
            self.check_delay(receiver, consume=True)
        except (ReceiverTooSoon, StorageUnavailable):
            if spend is not None:
                self.budgets.refund(spend)
            raise
        return spend

    def admit_send(self, receiver: str, segments: int,
                   circuit: Circuit | None = None) -> tuple[Spend | None, tuple[str, int] | None]:
        """`admit` for a send, with the storage's part in one operation (`Storage.guards_admit`),
        which also asks the first route's `circuit` when there is one.

        The same rules, order and refusals as `admit`; returns the budget's `Spend` (or
        None) and the circuit's `circuit_admit` answer for `Failover.send` (None when not
        asked). Raises the first refusal's `GuardRejection`, or `StorageUnavailable`.
        """
        self.check_destination(receiver)
        found = None
        if self.budgets is not None:
            try:
                found = self.budgets.budget_for(phone.region_of(receiver), segments)
            except MessageOverBudget:
                # The opt-out answers first: the composed path keeps that order.
                return self.admit(receiver, segments), None
        canonical = phone.canonical(receiver)
        ask = BudgetAsk(found[0], segments, found[1].limit, found[1].window_ms) if found else None
        answer = self.storage.guarded(lambda: self.storage.guards_admit(
            canonical, _delay_key(canonical), self._reset_after_ms, ask, circuit.ask() if circuit else None))
        if answer.refused == "suppressed":
            _refuse_suppressed(counted=True)
        if answer.refused == "delay":
            _refuse_too_soon(answer.wait_ms)
        spend = None
        if found is not None and answer.budget_used is not None:
            country, budget = found
            spend = self.budgets.settle(country, segments, budget, answer.wait_ms, answer.budget_used,
                                        answer.budget_at if answer.refused is None else None)
        return spend, answer.circuit

    def check_rate_limit(self) -> None:
        """Count one /send request against the deployment-wide limit.

        Raises `RateLimitExceeded` with the seconds until a slot frees up, or
        `StorageUnavailable`.
        """
        limit = self.settings.rate_limit_max_requests
        wait_ms = self.storage.guarded(
            lambda: self.storage.window_acquire(RATE_LIMIT_KEY, limit, self._window_ms)
        )
        if wait_ms > 0:
            raise RateLimitExceeded(
                f"rate limit of {limit} requests per {format_duration(self._window_ms)} reached",
                retry_after=max(1, math.ceil(wait_ms / 1000)),
            )

    def check_destination(self, receiver: str) -> None:
        """Refuse a receiver of an international network (unless allowed), outside
        ALLOWED_COUNTRIES, or of a blocked number type.

        Raises `DestinationRefused`.
        """
        if not self.settings.allow_international_networks:
            code = phone.international_network_code(receiver)
            if code is not None:
                raise DestinationRefused(
                    f"receiver: numbers of international networks (+{code}) are not allowed")
        allowed = self.settings.allowed_countries
        if allowed is not None:
            region = phone.region_of(receiver)
            if region not in allowed:
                raise DestinationRefused(
                    f"receiver: destination country {region or 'unknown'} is not allowed"
                )
        blocked = self.settings.blocked_number_types
        number_type = phone.type_of(receiver) if blocked else None
        if number_type in blocked:
            raise DestinationRefused(f"receiver: {number_type.lower().replace('_', '-')} numbers are blocked")

    def check_suppression(self, receiver: str, *, consume: bool = True) -> None:
        """Refuse a receiver on the suppression list (it opted out): one key read.

        Only a refused send (`consume`) is counted in the metrics. Raises
        `ReceiverSuppressed`, or `StorageUnavailable` (fail closed).
        """
        if self.suppression.is_suppressed(receiver):
            _refuse_suppressed(counted=consume)

    def check_delay(self, receiver: str, *, consume: bool = True) -> None:
        """Apply the exponential delay of one receiver, recording the message when it may go
        (with `consume`; without it, only tell whether it may).

        Raises `ReceiverTooSoon` with the seconds left, or `StorageUnavailable`.
        """
        key = _delay_key(phone.canonical(receiver))
        operation = self.storage.delay_acquire if consume else self.storage.delay_peek
        wait_ms = self.storage.guarded(lambda: operation(key, self._reset_after_ms))
        if wait_ms > 0:
            _refuse_too_soon(wait_ms)


def _delay_key(canonical: str) -> str:
    # Hashed: the storage never holds a receiver's number for the delay.
    return hashlib.sha256(f"sms-service:{canonical}".encode()).hexdigest()


def _refuse_suppressed(*, counted: bool) -> None:
    if counted:  # only a refused send is counted, never an estimate
        metrics.SUPPRESSED_SENDS.inc()
    raise ReceiverSuppressed("receiver: this number has opted out")


def _refuse_too_soon(wait_ms: int) -> None:
    raise ReceiverTooSoon(
        "receiver: too many messages to this number, wait before sending again",
        retry_after=max(1, math.ceil(wait_ms / 1000)),
    )

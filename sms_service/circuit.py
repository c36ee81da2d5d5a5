"""One provider's circuit breaker, its state in the shared storage (SPEC section 13).

All workers and replicas that share STORAGE_URI share each circuit: it opens after
FAILOVER_FAILURE_THRESHOLD consecutive failures, skips the provider for
FAILOVER_RESET_AFTER, then lets exactly one trial through, deployment-wide (claimed
with a lease, so a trial whose worker died frees itself). A success closes it; a failed
trial opens it again. See `sms_service.storage.base.Storage.circuit_admit`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from sms_service import metrics
from sms_service.storage import Storage
from sms_service.storage.base import CircuitAsk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Admission:
    """A call the circuit let through: a trial or not, and the failures it found."""

    trial: bool
    failures: int


class Circuit:
    """The breaker of provider `name`."""

    def __init__(self, name: str, storage: Storage, threshold: int, reset_after_ms: float,
                 lease_ms: float) -> None:
        self.name = name
        self.storage = storage
        self.threshold = threshold
        self.reset_after_ms = math.ceil(reset_after_ms)
        self.lease_ms = math.ceil(lease_ms)
        self._key = f"provider:{name}"

    def admit(self) -> Admission | None:
        """Let a call through (an `Admission`), or None while the circuit is open.

        One storage operation. Raises `StorageUnavailable` (the send fails closed).
        """
        state, value = self.storage.guarded(lambda: self.storage.circuit_admit(self._key, self.lease_ms))
        return self.admission(state, value)

    def ask(self) -> CircuitAsk:
        """What `Storage.guards_admit` needs to run this circuit's `circuit_admit` with the guards."""
        return CircuitAsk(self._key, self.lease_ms)

    def admission(self, state: str, value: int) -> Admission | None:
        """Act on `circuit_admit`'s answer `(state, value)`, as `admit` does with its own."""
        if state == "open":
            metrics.set_circuit_state(self.name, "open")
            return None
        if state == "trial":
            metrics.set_circuit_state(self.name, "half-open")
            log.info("circuit half-open: one trial goes to the provider", extra={"provider": self.name})
            return Admission(trial=True, failures=0)
        return Admission(trial=False, failures=value)

    def record(self, admission: Admission, ok: bool) -> None:
        """Record the outcome of an admitted call; never raises.

        Every outcome is recorded, a success too: failures that other requests recorded
        while this call ran are not consecutive, and only a success clears them. On the
        closed and healthy path that is one read (the storage writes only when there is
        something to clear).
        """
        try:
            before, after = self.storage.guarded(lambda: self.storage.circuit_record(
                self._key, ok, admission.trial, self.threshold, self.reset_after_ms))
        except Exception as exc:  # the promise: never raises
            # The outcome is already decided (an SMS may have gone): whatever breaks here,
            # only the count is lost, never the answer.
            log.error("could not record the outcome of a provider call in its circuit",
                      extra={"provider": self.name, "error_class": type(exc).__name__})
            return
        if before == after == "closed" and ok and not admission.failures:
            return  # the healthy path: nothing changed, the gauge already says closed
        metrics.set_circuit_state(self.name, after)
        if before == "closed" and after == "open":
            log.warning("circuit opened: the provider is skipped until a trial succeeds",
                        extra={"provider": self.name, "failures": self.threshold,
                               "reset_after_ms": self.reset_after_ms})
        elif admission.trial and after == "open":
            log.warning("circuit trial failed: the provider stays skipped", extra={"provider": self.name})
        elif before == "open" and after == "closed":
            log.info("circuit closed: the provider takes messages again", extra={"provider": self.name})

    def state(self) -> tuple[str, int, int]:
        """``(state, failures, ms until a trial)`` as the storage has it; updates the gauge.

        Raises `StorageUnavailable`.
        """
        state, failures, wait = self.storage.guarded(lambda: self.storage.circuit_get(self._key))
        metrics.set_circuit_state(self.name, state)
        return state, failures, wait

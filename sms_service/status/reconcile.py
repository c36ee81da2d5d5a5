"""The reconciler (SPEC section 18): asks providers about records whose callbacks were lost, and
gives every record a final status, `unknown` when no final report came in time.

Every worker runs one `Reconciler` thread, but only the holder of a lease in STORAGE_URI
works (taken over within a minute when its holder dies), and every lookup first takes a
place in a moving window shared by the whole deployment (RECONCILE_RATE a second). Due
records come from the storage's index of their ``checkAt`` times, never a scan. What a
lookup finds goes through `StatusService.apply`, the callbacks' own path: sticky rule,
history (``source: lookup``), metrics and webhooks.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from sms_service import metrics
from sms_service.exceptions import ProviderError, ProviderRateLimited, StorageUnavailable
from sms_service.status import listing, model
from sms_service.status.service import StatusService
from sms_service.storage import Storage

log = logging.getLogger(__name__)

# After the first lookup (RECONCILE_AFTER after the last change), again this long after the send.
SLOTS_MS = (3_600_000, 21_600_000, 86_400_000)
LEASE_KEY = "reconcile:lease"
# A dead holder's lease runs out within this; renewed at every poll.
LEASE_MS = 30_000
POLL_S = 1.0
BATCH = 50
RATE_KEY = "reconcile:lookups"
# A provider that throttles lookups is left alone this long (or its Retry-After), doubling to the cap.
BACKOFF_MS = (5_000, 300_000)
# A failed lookup (not a throttle) is tried again this much later, without using up its slot.
RETRY_AFTER_ERROR_MS = 60_000
COMPLAINT_EVERY_S = 60.0


def _iso_ms(text: object) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(text)).timestamp() * 1000
    except ValueError:
        return None


def lookup_due(record: dict[str, Any], now_ms: float, after_ms: float) -> bool:
    """Tell whether `record` (not final) is to be looked up now.

    The first lookup comes `after_ms` after its last change; later ones at each of
    SLOTS_MS after the send that the last lookup came before.
    """
    looked = record.get("lookedAt")
    if not isinstance(looked, int | float):
        changed = _iso_ms(record.get("updatedAt")) or listing.sent_ms(record)
        return now_ms >= changed + after_ms
    sent = listing.sent_ms(record)
    return any(looked < sent + slot <= now_ms for slot in SLOTS_MS)


def next_check(record: dict[str, Any], now_ms: float, after_ms: float | None, final_after_ms: float,
               can_look_up: bool) -> float:
    """When the reconciler should look at `record` (not final) again: its next lookup, or its end."""
    sent = listing.sent_ms(record)
    times = [sent + final_after_ms]
    if can_look_up and after_ms is not None:
        looked = record.get("lookedAt")
        if not isinstance(looked, int | float):
            changed = _iso_ms(record.get("updatedAt")) or sent
            times.append(changed + after_ms)
            looked = -math.inf
        times += [sent + slot for slot in SLOTS_MS if sent + slot > max(looked, now_ms)]
    return max(min(times), now_ms + 1)


def first_check_ms(after_ms: float | None, final_after_ms: float, can_look_up: bool) -> float:
    """How long after its send a record is first looked at."""
    if can_look_up and after_ms is not None:
        return min(after_ms, final_after_ms)
    return final_after_ms


def rate_window(rate: float) -> tuple[int, int]:
    """RECONCILE_RATE lookups a second as a moving window: `(limit, window_ms)`."""
    limit = max(1, math.ceil(rate))
    return limit, max(1, round(limit / rate * 1000))


class Reconciler:
    """One worker's reconciler thread; it works only while it holds the deployment's lease."""

    def __init__(self, storage: Storage, services: Mapping[str, StatusService], fallback: StatusService, *,
                 after_ms: float | None, rate: float, final_after_ms: float,
                 lease_ms: int = LEASE_MS, poll_s: float = POLL_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.services = services  # by provider name: each provider's records and plugin
        self.fallback = fallback  # for records of a provider no longer configured
        self.after_ms = after_ms
        self.final_after_ms = final_after_ms
        self.rate_limit, self.rate_window_ms = rate_window(rate)
        self.lease_ms = lease_ms
        self.poll_s = poll_s
        self.clock = clock
        self.token = uuid.uuid4().hex
        self._backoff_until: dict[str, float] = {}
        self._backoff_ms: dict[str, float] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_in: int | None = None
        self._complained_at = -COMPLAINT_EVERY_S
        self.holding = False
        self._renewed_at = time.monotonic()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread in this process (after a fork); again in the same process, nothing."""
        if self._started_in == os.getpid():
            return
        self._started_in = os.getpid()
        self.token = uuid.uuid4().hex  # a forked copy is another holder
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="reconciler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and give the lease back, so another worker takes over at once."""
        self._stopping.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
        if self.holding:
            try:
                self.storage.guarded(lambda: self.storage.record_delete(LEASE_KEY, self.token))
            except StorageUnavailable:
                pass  # it runs out by itself
            self.holding = False

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self.hold_lease():
                    self.run_once()
            except StorageUnavailable:
                self._complain("reconciler: storage unavailable; it waits")
            except Exception as exc:
                # The thread must outlive any surprise, or no record of the deployment ends.
                self._complain(f"reconciler error ({type(exc).__name__}); it goes on")
            self._stopping.wait(self.poll_s)

    def hold_lease(self) -> bool:
        """Take or renew the deployment's lease; tell whether this reconciler holds it.

        Raises `StorageUnavailable`.
        """
        existing = self.storage.guarded(
            lambda: self.storage.record_reserve(LEASE_KEY, self.token, self.lease_ms))
        # Ours (new or already held: SQLite answers None for our own value too): renewed
        # for a whole lease from now.
        held = (existing is None or existing == self.token) and self.storage.guarded(
            lambda: self.storage.record_swap(LEASE_KEY, self.token, self.token, self.lease_ms))
        if held:
            self._renewed_at = time.monotonic()
        if held != self.holding:
            log.info(f"reconciler lease {'taken' if held else 'lost'}", extra={"pid": os.getpid()})
        self.holding = held
        return held

    def _complain(self, message: str) -> None:
        now = time.monotonic()
        if now - self._complained_at >= COMPLAINT_EVERY_S:
            self._complained_at = now
            log.warning(message)

    # -- one round -----------------------------------------------------------------------

    def run_once(self) -> int:
        """Look at every record due now (in batches); return how many. Raises `StorageUnavailable`."""
        done = 0
        while not self._stopping.is_set():
            now = self.clock() * 1000
            due = self.storage.guarded(lambda now=now: self.storage.message_due(now, BATCH))
            if done == 0:
                lag = max(0.0, now - due[0][1]["checkAt"]) / 1000 if due else 0.0
                metrics.RECONCILE_LAG.set(lag)
            if not due:
                break
            for key, record in due:
                # A long round (a backlog at RECONCILE_RATE) keeps renewing the lease, and
                # ends as soon as another worker has it.
                if self._stopping.is_set() or (
                        time.monotonic() - self._renewed_at > self.lease_ms / 3000 and not self.hold_lease()):
                    return done
                try:
                    self.reconcile(key, record)
                except StorageUnavailable:
                    raise
                except Exception as exc:
                    # A plugin's surprise must not stop the round at this record every poll.
                    log.warning("reconciler could not handle a record; it tries again later",
                                extra={"key": key[:200], "error_class": type(exc).__name__})
                    self._schedule(key, self.clock() * 1000 + RETRY_AFTER_ERROR_MS)
                done += 1
            if len(due) < BATCH:
                break
        return done

    def reconcile(self, key: str, record: dict[str, Any]) -> None:
        """Look at one due record: make it unknown, look it up, or schedule it later."""
        now = self.clock() * 1000
        provider_name = str(record.get("provider") or "")
        service = self.services.get(provider_name)
        can_look_up = service is not None and service.provider.supports_fetch_status()
        if now >= listing.sent_ms(record) + self.final_after_ms:
            (service or self.fallback).mark_unknown(key, record)
            return
        if not (can_look_up and self.after_ms is not None and lookup_due(record, now, self.after_ms)):
            self._schedule(key, next_check(record, now, self.after_ms, self.final_after_ms, can_look_up))
            return
        if self._backoff_until.get(provider_name, 0) > now:
            self._schedule(key, self._backoff_until[provider_name])
            return
        self._take_a_place()
        self._look_up(service, key, record)

    def _take_a_place(self) -> None:
        """Wait for a place in the deployment's moving window of lookups."""
        while not self._stopping.is_set():
            wait_ms = self.storage.guarded(
                lambda: self.storage.window_acquire(RATE_KEY, self.rate_limit, self.rate_window_ms))
            if wait_ms == 0:
                return
            self._stopping.wait(wait_ms / 1000)

    def _look_up(self, service: StatusService, key: str, record: dict[str, Any]) -> None:
        provider = service.provider_name
        sid = str(record.get("sid"))
        try:
            update = service.provider.fetch_status(sid)
        except ProviderRateLimited as exc:
            metrics.count_lookup(provider, "rate_limited")
            delay = self._backoff_ms.get(provider, BACKOFF_MS[0] / 2) * 2
            delay = min(max(delay, (exc.retry_after or 0) * 1000), BACKOFF_MS[1])
            self._backoff_ms[provider] = delay
            self._backoff_until[provider] = self.clock() * 1000 + delay
            log.warning("status lookups throttled by the provider; backing off",
                        extra={"provider": provider, "retry_in_ms": round(delay)})
            self._schedule(key, self._backoff_until[provider])
            return
        except LookupError:
            metrics.count_lookup(provider, "not_found")
            self._after_lookup(service, key, record)
            return
        except ProviderError as exc:
            metrics.count_lookup(provider, "error")
            log.warning("status lookup failed", extra={"provider": provider, "sid": sid,
                                                       "error_class": type(exc).__name__})
            self._schedule(key, self.clock() * 1000 + RETRY_AFTER_ERROR_MS)
            return
        self._backoff_ms.pop(provider, None)
        if update.sid != sid:
            metrics.count_lookup(provider, "error")
            log.warning("status lookup answered for another message",
                        extra={"provider": provider, "sid": sid})
            self._after_lookup(service, key, record)
            return
        try:
            before, after = service.apply(update, source="lookup")
        except ValueError as exc:
            metrics.count_lookup(provider, "error")
            log.warning("status lookup unusable", extra={"provider": provider, "reason": str(exc)[:200]})
            self._after_lookup(service, key, record)
            return
        metrics.count_lookup(provider, "changed" if after.get("status") != before else "unchanged")
        self._after_lookup(service, key, after)

    def _after_lookup(self, service: StatusService, key: str, record: dict[str, Any]) -> None:
        now = self.clock() * 1000
        looked = {**record, "lookedAt": now}
        check = None if record.get("status") in model.FINAL else next_check(
            looked, now, self.after_ms, self.final_after_ms, True)
        self.storage.guarded(lambda: self.storage.message_schedule(key, check, now))

    def _schedule(self, key: str, check_at_ms: float) -> None:
        self.storage.guarded(lambda: self.storage.message_schedule(key, check_at_ms))


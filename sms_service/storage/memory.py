"""memory:// storage: state in this process only, for tests and single-process trials."""

from __future__ import annotations

import copy
import math
import threading
import time
import uuid
from collections import deque
from typing import Any

from sms_service.status import events, listing, model
from sms_service.storage import base
from sms_service.storage.base import BudgetAsk, CircuitAsk, GuardsAnswer, OutboxEvent, Storage


def _now_ms() -> float:
    return time.monotonic() * 1000


class MemoryStorage(Storage):
    """State in this process only: right for one worker, wrong for several.

    The moving window is a deque of hit times rather than `limits`' in-memory storage,
    which inserts at the head of a list (O(n) per hit) and starts a timer thread every
    10 ms: together a fifth of a worker's CPU under load (bench/README.md).
    """

    def __init__(self) -> None:
        # Re-entrant: guards_admit holds it across the single operations it is made of.
        self._lock = threading.RLock()
        self._windows: dict[str, deque[float]] = {}
        self._streaks: dict[str, tuple[int, float, float]] = {}
        self._records: dict[str, tuple[float, str]] = {}
        self._messages: dict[str, tuple[float, dict[str, Any]]] = {}
        self._suppressed: dict[str, tuple[str, int]] = {}
        self._outbox: dict[str, dict[str, Any]] = {}
        self._next_sweep = 0.0
        self._budgets: dict[str, tuple[deque[tuple[float, int]], int]] = {}
        # Failover circuits: key -> [failures, reset time (0: closed), trial lease end].
        self._circuits: dict[str, list[float]] = {}
        self._secrets: dict[str, str] = {}
        # Templates: name -> [archived, [(number, content, created), ...]].
        self._templates: dict[str, list[Any]] = {}

    def window_acquire(self, key: str, limit: int, window_ms: int) -> int:
        with self._lock:
            now = _now_ms()  # under the lock: each operation sees time move forward
            hits = self._windows.setdefault(key, deque())
            while hits and hits[0] <= now - window_ms:
                hits.popleft()
            if len(hits) < limit:
                hits.append(now)
                return 0
            # The hit `limit` places back leaves the window first among those that matter.
            return max(1, math.ceil(hits[-limit] + window_ms - now))

    def delay_acquire(self, key: str, reset_after_ms: int) -> int:
        with self._lock:
            now = _now_ms()
            self._sweep(now)
            k, last, _ = self._streaks.get(key, (0, -math.inf, 0.0))
            if k and now - last < reset_after_ms:
                wait = 1000 * 2 ** (k - 1)
                if now - last < wait:
                    return max(1, math.ceil(last + wait - now))
                k += 1
            else:
                k = 1
            self._streaks[key] = (k, now, now + reset_after_ms)
            return 0

    def _sweep(self, now: float) -> None:
        # Bounded memory: forget streaks and records past their time, at most once a second.
        if now < self._next_sweep:
            return
        self._next_sweep = now + 1000
        for key in [key for key, (_, _, expires) in self._streaks.items() if expires <= now]:
            del self._streaks[key]
        for key in [key for key, (expires, _) in self._records.items() if expires <= now]:
            del self._records[key]
        for key in [key for key, (expires, _) in self._messages.items() if expires <= now]:
            del self._messages[key]

    def _live(self, key: str, now: float) -> str | None:
        expires, value = self._records.get(key, (0.0, None))
        return value if expires > now else None

    def record_reserve(self, key: str, value: str, ttl_ms: int) -> str | None:
        with self._lock:
            now = _now_ms()
            self._sweep(now)
            existing = self._live(key, now)
            if existing is not None:
                return existing
            self._records[key] = (now + ttl_ms, value)
            return None

    def record_swap(self, key: str, expected: str, value: str, ttl_ms: int) -> bool:
        with self._lock:
            now = _now_ms()
            if self._live(key, now) != expected:
                return False
            self._records[key] = (now + ttl_ms, value)
            return True

    def record_delete(self, key: str, expected: str) -> bool:
        with self._lock:
            now = _now_ms()
            if self._live(key, now) != expected:
                return False
            del self._records[key]
            return True

    def _live_message(self, key: str, now: float) -> dict[str, Any] | None:
        expires, record = self._messages.get(key, (0.0, None))
        return record if expires > now else None

    def message_create(self, key: str, record: dict[str, Any], ttl_ms: int,
                       event_id: str | None = None) -> bool:
        record = copy.deepcopy(record)
        own_status = record.get("status")
        with self._lock:
            now = _now_ms()
            self._sweep(now)
            existing = self._live_message(key, now)
            if existing is not None and not existing.get("orphan"):
                return False
            if existing is not None:
                model.merge(record, existing)
                if event_id and events.makes_event(own_status, record):
                    self._enqueue(event_id, key, record, now)
            self._messages[key] = (now + ttl_ms, record)
            return existing is not None

    def message_update(self, key: str, entry: dict[str, Any], orphan: dict[str, Any],
                       ttl_ms: int, event_id: str | None = None) -> tuple[str | None, dict[str, Any]]:
        with self._lock:
            now = _now_ms()
            self._sweep(now)
            record = self._live_message(key, now)
            if record is None:
                before, record = None, model.orphan_with(orphan, entry)
            else:
                before = record.get("status")
                model.apply_entry(record, entry)
            self._messages[key] = (now + ttl_ms, record)
            if event_id and events.makes_event(before, record):
                self._enqueue(event_id, key, record, now)
            return before, copy.deepcopy(record)

    def message_get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._live_message(key, _now_ms())
            return copy.deepcopy(record) if record is not None else None

    def suppression_add(self, number: str, source: str) -> bool:
        with self._lock:
            if number in self._suppressed:
                return False
            self._suppressed[number] = (source, int(time.time() * 1000))
            return True

    def suppression_remove(self, number: str) -> bool:
        with self._lock:
            return self._suppressed.pop(number, None) is not None

    def suppression_get(self, number: str) -> tuple[str, int] | None:
        # A dict read is atomic under the GIL: the hot path takes no lock.
        return self._suppressed.get(number)

    def suppression_all(self) -> list[tuple[str, str, int]]:
        with self._lock:
            return sorted((number, source, since) for number, (source, since) in self._suppressed.items())

    def ping(self) -> bool:
        return True

    # -- segment budgets and estimates (SPEC section 14) --------------------------------

    def budget_spend(self, key: str, cost: int, limit: int, window_ms: int) -> tuple[int, int, float]:
        return self._budget(key, cost, limit, window_ms, consume=True)

    def budget_peek(self, key: str, cost: int, limit: int, window_ms: int) -> tuple[int, int]:
        return self._budget(key, cost, limit, window_ms, consume=False)[:2]

    def _budget(self, key: str, cost: int, limit: int, window_ms: int, *,
                consume: bool) -> tuple[int, int, float]:
        with self._lock:
            now = _now_ms()
            entries, total = self._budgets.get(key, (None, 0))
            if entries is None:
                entries = deque()
            while entries and entries[0][0] <= now - window_ms:
                total -= entries.popleft()[1]
            if total + cost <= limit:
                if consume:
                    entries.append((now, cost))
                    total += cost
                self._budgets[key] = (entries, total)
                return 0, total, now if consume else 0.0
            self._budgets[key] = (entries, total)
            # Each entry is at least one unit: the wait is decided within the oldest `need`.
            need, freed = total + cost - limit, 0
            for when, units in entries:
                freed += units
                if freed >= need:
                    return max(1, math.ceil(when + window_ms - now)), total, 0.0
            return max(1, window_ms), total, 0.0  # pragma: no cover  (total is the entries' sum)

    def delay_peek(self, key: str, reset_after_ms: int) -> int:
        with self._lock:
            now = _now_ms()
            k, last, _ = self._streaks.get(key, (0, -math.inf, 0.0))
            if not k or now - last >= reset_after_ms:
                return 0
            wait = 1000 * 2 ** (k - 1)
            return max(1, math.ceil(last + wait - now)) if now - last < wait else 0

    # -- status webhook outbox (SPEC section 11): dies with the process ------------------

    def _enqueue(self, event_id: str, key: str, record: dict[str, Any], now: float) -> None:
        # Under the caller's lock, with the record's change.
        self._outbox[event_id] = {"key": key, "record": copy.deepcopy(events.snapshot(record)),
                                  "created": now, "due": now, "attempts": 0, "lease": ""}

    def webhook_claim(self, limit: int, lease_ms: int, retry_for_ms: float | None = None,
                      max_backlog: int | None = None) -> list[OutboxEvent]:
        with self._lock:
            now = _now_ms()
            dropped = self._drop_beyond_bounds(now, retry_for_ms, max_backlog)
            due = sorted((event["due"], event_id) for event_id, event in self._outbox.items()
                         if event["due"] <= now)[:limit]
            claimed = []
            for _, event_id in due:
                event = self._outbox[event_id]
                event["due"], event["lease"] = now + lease_ms, uuid.uuid4().hex
                claimed.append(OutboxEvent(event_id, event["key"], copy.deepcopy(event["record"]),
                                           event["attempts"], now - event["created"], event["lease"]))
            return dropped + claimed

    def _drop_beyond_bounds(self, now: float, retry_for_ms: float | None,
                            max_backlog: int | None) -> list[OutboxEvent]:
        # Under the caller's lock. The dict keeps creation order (events are never put back).
        def free(event: dict[str, Any]) -> bool:
            return not (event["lease"] and event["due"] > now)  # no attempt in flight

        chosen: list[tuple[str, str]] = []
        if retry_for_ms is not None:
            for event_id, event in self._outbox.items():
                if now - event["created"] < retry_for_ms or len(chosen) >= base.OUTBOX_DROP_BATCH:
                    break
                if free(event):
                    chosen.append((event_id, "expired"))
        if max_backlog is not None:
            over = len(self._outbox) - len(chosen) - max_backlog
            taken = {event_id for event_id, _ in chosen}
            for event_id, event in self._outbox.items():
                if over <= 0 or len(chosen) >= base.OUTBOX_DROP_BATCH:
                    break
                if event_id not in taken and free(event):
                    chosen.append((event_id, "backlog"))
                    over -= 1
        dropped = []
        at = model.timestamp()
        for event_id, reason in chosen:
            event = self._outbox.pop(event_id)
            record = self._live_message(event["key"], now)
            if record is not None:
                events.add_failure(record, events.dropped_failure(
                    event_id, event["record"].get("status"), event["attempts"], reason, at))
            dropped.append(OutboxEvent(event_id, event["key"], copy.deepcopy(event["record"]),
                                       event["attempts"], now - event["created"], "", reason))
        return dropped

    def webhook_delivered(self, event_id: str) -> bool:
        with self._lock:
            return self._outbox.pop(event_id, None) is not None

    def webhook_retry(self, event_id: str, lease: str, delay_ms: int) -> bool:
        with self._lock:
            event = self._outbox.get(event_id)
            if event is None or event["lease"] != lease:
                return False
            event.update(due=_now_ms() + delay_ms, attempts=event["attempts"] + 1, lease="")
            return True

    def webhook_exhausted(self, event_id: str, lease: str, failure: dict[str, Any]) -> bool:
        with self._lock:
            event = self._outbox.get(event_id)
            if event is None or event["lease"] != lease:
                return False
            del self._outbox[event_id]
            record = self._live_message(event["key"], _now_ms())
            if record is not None:
                events.add_failure(record, failure)
            return True

    def webhook_stats(self) -> tuple[int, float | None]:
        with self._lock:
            # Events enter in the order they are created and are never put back, so the
            # first in the dict is the oldest: no walk over the outbox under the lock.
            oldest = next(iter(self._outbox.values()), None)
            if oldest is None:
                return 0, None
            return len(self._outbox), _now_ms() - oldest["created"]

    # -- circuit breakers of provider failover (SPEC section 13) ------------------------

    def circuit_admit(self, key: str, lease_ms: int) -> tuple[str, int]:
        with self._lock:
            now = _now_ms()
            circuit = self._circuits.get(key)
            if circuit is None:
                return "closed", 0
            failures, retry_at, lease_until = circuit
            if not retry_at:
                return "closed", int(failures)
            wait = max(retry_at, lease_until) - now
            if wait > 0:
                return "open", max(1, math.ceil(wait))
            circuit[2] = now + lease_ms
            return "trial", 0

    def circuit_record(self, key: str, ok: bool, trial: bool, threshold: int,
                       reset_after_ms: int) -> tuple[str, str]:
        with self._lock:
            now = _now_ms()
            circuit = self._circuits.get(key)
            if ok and (circuit is None or not (circuit[0] or circuit[1])):
                return "closed", "closed"  # closed and healthy: nothing to clear
            circuit = self._circuits.setdefault(key, [0, 0.0, 0.0])
            before = "open" if circuit[1] else "closed"
            if ok:
                circuit[:] = [0, 0.0, 0.0]
            elif trial:
                circuit[:] = [circuit[0] + 1, now + reset_after_ms, 0.0]
            else:
                circuit[0] += 1
                if not circuit[1] and circuit[0] >= threshold:
                    circuit[1] = now + reset_after_ms
            return before, "open" if circuit[1] else "closed"

    def circuit_get(self, key: str) -> tuple[str, int, int]:
        with self._lock:
            failures, retry_at, lease_until = self._circuits.get(key, (0, 0.0, 0.0))
            return _circuit_state(int(failures), retry_at, lease_until, _now_ms())

    # -- review fixes: taking back a budget spend that sent nothing ---------------------

    def budget_refund(self, key: str, cost: int, window_ms: int, at: float) -> bool:
        with self._lock:
            entries, total = self._budgets.get(key, (None, 0))
            if not entries or (at, cost) not in entries:
                return False  # left the window (pruned), or refunded already
            entries.remove((at, cost))
            self._budgets[key] = (entries, max(0, total - cost))
            return True

    # -- templates (SPEC section 16) -----------------------------------------------------

    def template_put(self, name: str, content: str) -> tuple[int, bool]:
        with self._lock:
            template = self._templates.setdefault(name, [False, []])
            archived, versions = template
            if versions and not archived and versions[-1][1] == content:
                return versions[-1][0], False
            number = versions[-1][0] + 1 if versions else 1
            versions.append((number, content, int(time.time() * 1000)))
            template[0] = False
            return number, True

    def template_version(self, name: str, version: int | None) -> tuple[int, str, int, bool] | None:
        with self._lock:
            template = self._templates.get(name)
            if not template or not template[1]:
                return None
            archived, versions = template
            if version is None:
                return (*versions[-1], archived)
            found = next((v for v in versions if v[0] == version), None)
            return None if found is None else (*found, archived)

    def template_versions(self, name: str) -> tuple[bool, list[tuple[int, str, int]]] | None:
        with self._lock:
            template = self._templates.get(name)
            return (template[0], list(template[1])) if template and template[1] else None

    def template_archive(self, name: str) -> bool:
        with self._lock:
            template = self._templates.get(name)
            if not template or not template[1] or template[0]:
                return False
            template[0] = True
            return True

    def template_names(self) -> list[str]:
        with self._lock:
            return list(self._templates)

    def template_restore(self, name: str, versions: list[tuple[int, str, int]], archived: bool) -> bool:
        with self._lock:
            if self._templates.get(name, [False, []])[1]:
                return False
            self._templates[name] = [bool(archived), sorted((int(n), c, int(t)) for n, c, t in versions)]
            return True


    # -- message listing and overview (SPEC section 18): one process, no index needed ------

    def message_list(self, owner: str | None, *, status: str | None = None, provider: str | None = None,
                     template: str | None = None, since_ms: float | None = None,
                     until_ms: float | None = None, receiver_hash: str | None = None,
                     limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        after = listing.decode_cursor(cursor) if cursor else None
        filters = listing.Filters(status, provider, template, since_ms, until_ms, receiver_hash)
        with self._lock:
            now = _now_ms()
            found = [(listing.sent_ms(record), key, record)
                     for key, (expires, record) in self._messages.items()
                     if expires > now and (owner is None or record.get("owner") == owner)
                     and filters.matches(record)]
        found = sorted((row for row in found if listing.before_cursor(row[0], row[1], after)),
                       key=lambda row: (row[0], row[1]), reverse=True)[:limit + 1]
        page = found[:limit]
        following = listing.encode_cursor(page[-1][0], page[-1][1]) if len(found) > limit else None
        return [copy.deepcopy(record) for _, _, record in page], following

    def message_stats(self, since_ms: float) -> dict[str, Any]:
        with self._lock:
            now = _now_ms()
            records = [copy.deepcopy(record) for expires, record in self._messages.values()
                       if expires > now and listing.sent_ms(record) >= since_ms]
        return listing.stats_of(records)

    def secret_once(self, name: str, candidate: str) -> str:
        with self._lock:
            return self._secrets.setdefault(name, candidate)

    # -- prices (SPEC section 18) -------------------------------------------------------

    def message_price(self, key: str, price: str, unit: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._live_message(key, _now_ms())
            if record is None or not model.set_price(record, price, unit):
                return None
            return copy.deepcopy(record)

    # -- the reconciler's schedule (SPEC section 18) -------------------------------------

    def message_schedule(self, key: str, check_at_ms: float | None,
                         looked_at_ms: float | None = None) -> bool:
        with self._lock:
            record = self._live_message(key, _now_ms())
            if record is None or record.get("orphan"):
                return False
            model.schedule(record, check_at_ms, looked_at_ms)
            return True

    def message_due(self, now_ms: float, limit: int) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            now = _now_ms()
            due = [(record["checkAt"], key, record) for key, (expires, record) in self._messages.items()
                   if expires > now and model.is_due(record, now_ms)]
            due.sort(key=lambda row: (row[0], row[1]))
            return [(key, copy.deepcopy(record)) for _, key, record in due[:limit]]

    # -- the guards of one send in one operation (SPEC section 22) ----------------------

    def guards_admit(self, number: str, delay_key: str, reset_after_ms: int,
                     budget: BudgetAsk | None = None, circuit: CircuitAsk | None = None) -> GuardsAnswer:
        # The composed sequence under the one lock: atomic, so a concurrent send to the
        # receiver can no longer win the delay between its peek and its turn.
        with self._lock:
            return super().guards_admit(number, delay_key, reset_after_ms, budget, circuit)


def _circuit_state(failures: int, retry_at: float, lease_until: float, now: float) -> tuple[str, int, int]:
    if not retry_at:
        return "closed", failures, 0
    wait = max(retry_at, lease_until) - now  # a trial in flight keeps it open, as circuit_admit says
    if wait > 0:
        return "open", failures, max(1, math.ceil(wait))
    return "half-open", failures, 0


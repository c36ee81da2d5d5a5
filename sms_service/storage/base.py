"""The storage interface: the atomic operations every backend implements alike.

Each operation is atomic across every thread and process that shares the storage (a
lock in memory, one transaction in SQLite, one Lua script on Redis), and none is
retried blindly: an operation whose outcome is unknown raises instead. A storage that
cannot be reached raises `StorageUnavailable`, and callers refuse to send (fail closed).
"""

from __future__ import annotations

import abc
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import redis

from sms_service.exceptions import StorageUnavailable

log = logging.getLogger(__name__)

KEY_PREFIX = "sms-service"
T = TypeVar("T")


@dataclass(frozen=True)
class OutboxEvent:
    """A status webhook event as claimed from the outbox.

    `record` is the message record as the event saw it (never its owner); `attempts` the
    failed attempts so far; `age_ms` the time since it was created, by the storage's
    clock; `lease` the token of this claim.
    """

    id: str
    message_key: str
    record: dict[str, Any]
    attempts: int
    age_ms: float
    lease: str
    # Set when the claim dropped the event instead of claiming it (issue 22): "expired"
    # or "backlog". A dropped event is gone already; it is returned to be logged and counted.
    dropped: str | None = None


# The most events one claim drops: a claim stays one short step however far behind the
# outbox is; the next claims (about once a second per worker) drop the rest.
OUTBOX_DROP_BATCH = 1000


class Storage(abc.ABC):
    """Shared state: moving windows, receiver streaks, and keyed records with a TTL.

    Times are milliseconds. Windows and streaks never admit more than they promise;
    records are compared and swapped by their whole value, so a writer only ever
    replaces the value it put there itself.
    """

    @abc.abstractmethod
    def window_acquire(self, key: str, limit: int, window_ms: int) -> int:
        """Count one hit in the moving window `key` unless it would exceed `limit`.

        The promise: in any span of `window_ms`, at most `limit` hits are admitted.
        Returns 0 when the hit is admitted (and counted), else the milliseconds until
        one would be (>= 1); a refused hit is not counted.
        """

    @abc.abstractmethod
    def delay_acquire(self, key: str, reset_after_ms: int) -> int:
        """Record an accepted message for `key` unless its exponential delay has not passed.

        After the k-th message of a streak the next is accepted 2^(k-1) s later; a
        streak resets after `reset_after_ms` without an accepted message. Returns 0
        when accepted, else the milliseconds left to wait (>= 1). A refusal changes
        nothing.
        """

    @abc.abstractmethod
    def record_reserve(self, key: str, value: str, ttl_ms: int) -> str | None:
        """Store `value` under `key` unless a live record exists; return that record if so."""

    @abc.abstractmethod
    def record_swap(self, key: str, expected: str, value: str, ttl_ms: int) -> bool:
        """Replace the record under `key` with `value` only while it is still `expected`.

        Returns whether it was replaced.
        """

    @abc.abstractmethod
    def record_delete(self, key: str, expected: str) -> bool:
        """Forget the record under `key` only while it is still `expected`; tell whether it was."""

    # -- message records (SPEC section 10; the rule is sms_service.status.model) ---------

    @abc.abstractmethod
    def message_create(self, key: str, record: dict[str, Any], ttl_ms: int,
                       event_id: str | None = None) -> bool:
        """Store the record of an accepted send under `key` for `ttl_ms`.

        An orphan already there (callbacks that came first) is merged in: its history
        follows the record's own, and the sticky rule decides the status. A live record
        that is not an orphan is left as it is. On the hot path: keep it one round trip.

        With `event_id`, a merge that moves the status past the record's own also puts
        one webhook event in the outbox, in the same atomic step (see `webhook_claim`).
        Returns whether an orphan was merged in (so an event may have been enqueued: the
        caller wakes the deliverer rather than leave the event to its next poll).
        """

    @abc.abstractmethod
    def message_update(self, key: str, entry: dict[str, Any], orphan: dict[str, Any],
                       ttl_ms: int, event_id: str | None = None) -> tuple[str | None, dict[str, Any]]:
        """Apply one status `entry` to the record under `key` by the sticky rule, atomically.

        With no live record, an orphan is kept instead: the fields of `orphan` and the
        entry. The record's TTL starts again. Returns the status before (None when there
        was no record) and the record after.

        With `event_id`, when the status of a record (not an orphan) changed, one webhook
        event under that id, holding the record after, enters the outbox in the same
        atomic step: a crash can never keep the change and lose its event.
        """

    @abc.abstractmethod
    def message_get(self, key: str) -> dict[str, Any] | None:
        """The live record (or orphan) under `key`, or None."""

    # -- suppression list (SPEC section 12): kept forever, never hashed -----------------

    @abc.abstractmethod
    def suppression_add(self, number: str, source: str) -> bool:
        """Put `number` (canonical E.164) on the suppression list, from `source`, now.

        Returns whether it was added: a number already there keeps its first source and
        time (the audit trail says when the person first opted out).
        """

    @abc.abstractmethod
    def suppression_remove(self, number: str) -> bool:
        """Take `number` off the suppression list; tell whether it was on it."""

    @abc.abstractmethod
    def suppression_get(self, number: str) -> tuple[str, int] | None:
        """The `(source, since)` of `number` on the list (since: Unix milliseconds), or None.

        On the /send hot path: one cheap read (a key look-up, one round trip).
        """

    @abc.abstractmethod
    def suppression_all(self) -> list[tuple[str, str, int]]:
        """Every entry as `(number, source, since)`, sorted by number (export and audit)."""

    @abc.abstractmethod
    def ping(self) -> bool:
        """Tell whether the storage answers."""

    def close(self) -> None:  # noqa: B027  (optional hook: memory has nothing to release)
        """Release connections."""

    def guarded(self, call: Callable[[], T]) -> T:
        """Run a storage operation, turning any storage failure into `StorageUnavailable`."""
        try:
            return call()
        except (redis.RedisError, redis.exceptions.RedisClusterException, sqlite3.Error, OSError) as exc:
            raise StorageUnavailable(
                f"shared storage is unavailable ({type(exc).__name__}); nothing was sent"
            ) from None

    # -- segment budgets and estimates (SPEC section 14) --------------------------------
    #
    # Not `limits`' MovingWindow with a cost: it has no SQLite storage, and its window
    # keeps one entry per unit of cost (a day's budget of 20,000 segments is a list of
    # 20,000 on every hit). These windows keep one entry per admitted message (SQLite:
    # per bucket) and a running total, so a hit costs the same whatever the budget.

    @abc.abstractmethod
    def budget_spend(self, key: str, cost: int, limit: int, window_ms: int) -> tuple[int, int, float]:
        """Count `cost` units in the weighted moving window `key` unless it would then hold more than `limit`.

        The promise: in any span of `window_ms`, the units admitted total at most
        `limit` (SQLite errs strict by up to a hundredth of the window, never loose).
        `cost` is 1 to `limit`. Returns `(wait_ms, used, at)`: `wait_ms` is 0 when
        admitted (and counted), else the milliseconds until enough units have left the
        window for `cost` to fit (>= 1), and a refusal counts nothing; `used` is the
        units in the window after the call; `at` is the spend's time by the storage's
        own clock (0 when refused), which `budget_refund` takes to find this spend.
        """

    @abc.abstractmethod
    def budget_peek(self, key: str, cost: int, limit: int, window_ms: int) -> tuple[int, int]:
        """Answer what `budget_spend` would answer now, counting nothing."""

    @abc.abstractmethod
    def delay_peek(self, key: str, reset_after_ms: int) -> int:
        """Answer what `delay_acquire` would answer now (0, or the milliseconds left), recording nothing."""

    # -- status webhook outbox (SPEC section 11) ---------------------------------------
    #
    # An event enters with message_create / message_update, due at once. A claim hides it
    # from other claims for its lease; a worker that dies mid-attempt lets the lease run
    # out, and another claims it again. It leaves when delivered or exhausted.

    @abc.abstractmethod
    def webhook_claim(self, limit: int, lease_ms: int, retry_for_ms: float | None = None,
                      max_backlog: int | None = None) -> list[OutboxEvent]:
        """Claim at most `limit` due events, oldest due first, each for `lease_ms`.

        Bounds first (issue 22), in the same call: with `retry_for_ms`, every event
        created longer ago than that is dropped; with `max_backlog`, the oldest events
        beyond that many are dropped. A drop spends no attempt, appends a
        `events.dropped_failure` to the message record's ``webhookFailures`` in the same
        atomic step, and never touches an event under a live lease (an attempt in
        flight). At most `OUTBOX_DROP_BATCH` drops per call. Dropped events are returned
        too, with `OutboxEvent.dropped` set, for the caller to log and count.

        Atomic: two claims never get the same event while its lease runs. Nothing due
        costs one cheap read (every worker polls about once a second). An event whose
        stored form cannot be read (a damaged row, a hand edit) is logged by id and
        removed, never returned: it cannot be sent, and it must not fail the events
        claimed with it on every poll.
        """

    @abc.abstractmethod
    def webhook_delivered(self, event_id: str) -> bool:
        """Remove a delivered event, whoever holds its lease; tell whether it was there."""

    @abc.abstractmethod
    def webhook_retry(self, event_id: str, lease: str, delay_ms: int) -> bool:
        """Count a failed attempt and make the event due `delay_ms` from now.

        Only while `lease` is still its lease (else another worker has it); tells whether.
        """

    @abc.abstractmethod
    def webhook_exhausted(self, event_id: str, lease: str, failure: dict[str, Any]) -> bool:
        """Remove an event that ran out of retries and append `failure` to its message record.

        One atomic step, only while `lease` is still its lease; the record's list
        ``webhookFailures`` is bounded, and its TTL is left as it is (an expired record
        gets nothing). Tells whether the event was removed.
        """

    @abc.abstractmethod
    def webhook_stats(self) -> tuple[int, float | None]:
        """The outbox's size and the age in ms of its oldest event (None when empty)."""

    # -- circuit breakers of provider failover (SPEC section 13) ------------------------
    #
    # One circuit per provider, shared by every worker and replica. States: "closed"
    # (calls go), "open" (calls skip the provider until its reset time), and, once that
    # time has passed, one trial at a time: a caller claims it with a lease, so a trial
    # whose worker died frees itself when the lease ends. Never shared by more than
    # these four operations.

    @abc.abstractmethod
    def circuit_admit(self, key: str, lease_ms: int) -> tuple[str, int]:
        """Ask whether a call may go to the provider of circuit `key`.

        Returns ``("closed", failures)`` when the circuit is closed (`failures`: the
        consecutive failures so far); ``("trial", 0)`` when it is open, its reset time
        has passed and no live lease holds the trial: the caller now holds the trial for
        `lease_ms` and must report its outcome with `circuit_record`; else ``("open",
        ms)``: the milliseconds (>= 1) until a trial may be claimed. Exactly one caller
        gets ``"trial"`` per reset time or lease, deployment-wide. Closed is one cheap
        read on the hot path.
        """

    @abc.abstractmethod
    def circuit_record(self, key: str, ok: bool, trial: bool, threshold: int,
                       reset_after_ms: int) -> tuple[str, str]:
        """Record the outcome of a call to the provider of circuit `key`.

        A success closes the circuit and clears its failures. A failure counts one; the
        `threshold`-th consecutive failure of a closed circuit opens it for
        `reset_after_ms`; a failed trial (`trial`) opens it again for `reset_after_ms`
        and frees the trial. A failure of a call that started before the circuit opened
        changes no time. Returns the state before and after: ``"closed"`` or ``"open"``.

        A success is recorded after every successful call (it clears failures that
        other calls recorded meanwhile), so a success on a closed circuit without
        failures is one cheap read that writes nothing.
        """

    @abc.abstractmethod
    def circuit_get(self, key: str) -> tuple[str, int, int]:
        """Read circuit `key` without changing it: ``(state, failures, ms)``.

        `state` is ``"closed"``, ``"open"`` (`ms` until a trial may be claimed: the
        reset time, or the end of the lease of a trial in flight) or ``"half-open"``
        (the reset time has passed and no trial holds a live lease). It is exactly what
        `circuit_admit` would answer now, without claiming anything: "open" where it
        would say "open", "half-open" where it would give the trial.
        """

    # -- review fixes: taking back a budget spend that sent nothing ---------------------

    @abc.abstractmethod
    def budget_refund(self, key: str, cost: int, window_ms: int, at: float) -> bool:
        """Take back exactly one earlier admitted `budget_spend(key, cost, _, window_ms)` made at `at`.

        For a send that provably sent nothing. The window then holds `cost` units fewer
        (never fewer than 0); other spends are left as they are. A spend that has left
        the window already changes nothing. Call it at most once per spend: two spends
        of the same cost at the same time look alike. Tells whether units were taken
        back.
        """

    # -- message listing and overview (SPEC section 18) --------------------------------
    #
    # Every backend keeps an index of its records by owner and time (memory: the records
    # themselves), so a listing reads one page's worth, never every record. The filters,
    # the cursor and the overview's sums are sms_service.status.listing's.

    @abc.abstractmethod
    def message_list(self, owner: str | None, *, status: str | None = None, provider: str | None = None,
                     template: str | None = None, since_ms: float | None = None,
                     until_ms: float | None = None, receiver_hash: str | None = None,
                     limit: int = 50, cursor: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """The live records (never orphans) of `owner` (None: every owner), newest first.

        Each filter None matches all; `since_ms` is inclusive, `until_ms` exclusive (the
        send's time, Unix ms); `template` is the record's ``template.name``. Returns at
        most `limit` records (as stored, with their ``owner``) and the cursor of the
        next page, or None when there is none. Raises ValueError for a cursor that is
        not one of ours.
        """

    @abc.abstractmethod
    def message_stats(self, since_ms: float) -> dict[str, Any]:
        """The overview of every owner's records sent since `since_ms`: `listing.stats_of` of them."""

    @abc.abstractmethod
    def secret_once(self, name: str, candidate: str) -> str:
        """The deployment's secret `name`: `candidate` stored if there was none, else the stored one.

        Atomic create-if-absent: every worker and replica gets the same value. Never expires.
        """

    # -- prices (SPEC section 18) -------------------------------------------------------

    @abc.abstractmethod
    def message_price(self, key: str, price: str, unit: str) -> dict[str, Any] | None:
        """Give the live record under `key` its `price` and `unit`, unless it has a price already.

        Atomic: of two callers bringing a price for one record, exactly one gets the
        record back (and counts the spend); the other, or a caller finding no record or
        an orphan, gets None. The record's TTL is left as it is.
        """

    # -- the reconciler's schedule (SPEC section 18) -------------------------------------
    #
    # A record's private ``checkAt`` (Unix ms) says when the reconciler looks at it next
    # (a lookup, or making it `unknown`), ``lookedAt`` when it last asked the provider.
    # Every backend keeps an index of the due times (SQLite: message_index.check_at,
    # Redis: one sorted set), so the reconciler never reads every record.

    @abc.abstractmethod
    def message_schedule(self, key: str, check_at_ms: float | None,
                         looked_at_ms: float | None = None) -> bool:
        """Set the live record's ``checkAt`` (None: never again) and, when given, ``lookedAt``.

        Orphans and missing records are left alone; the TTL is kept. Tells whether a
        record was changed.
        """

    @abc.abstractmethod
    def message_due(self, now_ms: float, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """At most `limit` live records not final whose ``checkAt`` is at or before `now_ms`.

        As `(key, record)`, the longest overdue first. Index entries whose record expired
        or went final are dropped on the way.
        """

    # -- Sentinel and Cluster (SPEC section 19) -----------------------------------------

    def describe(self) -> dict[str, Any]:
        """Where the data lives now, for check-config and the check-up: Redis names its
        topology and its primary. Raises the storage's own errors when it cannot be asked."""
        return {}

    # -- templates (SPEC section 16): kept forever, versions immutable -------------------
    #
    # A template is a name, an archived flag and its versions 1..n, each a content string
    # (canonical JSON, compared whole) and its creation time. Numbers are never reused:
    # archiving keeps every version, and the next PUT takes the next number.

    @abc.abstractmethod
    def template_put(self, name: str, content: str) -> tuple[int, bool]:
        """Store `content` as the next version of `name`, unless it is the latest's of a live template.

        Atomic: two concurrent puts of different content make two versions with distinct
        numbers. An archived template is brought back by any put, even of its latest
        content, as a new version. Returns the version number stored or kept, and
        whether it is new.
        """

    @abc.abstractmethod
    def template_version(self, name: str, version: int | None) -> tuple[int, str, int, bool] | None:
        """Version `version` (None: the latest) of `name` as ``(number, content, created, archived)``.

        `created` is Unix milliseconds; `archived` the template's flag. None when the
        template or that version does not exist. On the send path: one round trip.
        """

    @abc.abstractmethod
    def template_versions(self, name: str) -> tuple[bool, list[tuple[int, str, int]]] | None:
        """Every version of `name`, oldest first, as ``(number, content, created)``, and its archived flag."""

    @abc.abstractmethod
    def template_archive(self, name: str) -> bool:
        """Archive `name`; tell whether it existed and was not archived already."""

    @abc.abstractmethod
    def template_names(self) -> list[str]:
        """The names of the templates (archived ones included), in no set order.

        May name a template that does not exist (an index written before a put that
        failed): callers skip such names.
        """

    @abc.abstractmethod
    def template_restore(self, name: str, versions: list[tuple[int, str, int]], archived: bool) -> bool:
        """Recreate `name` with exactly these versions ``(number, content, created)`` (an import).

        Only when no template `name` exists; tells whether it was restored.
        """

    # -- the guards of one send in one operation (SPEC section 22) ----------------------

    def guards_admit(self, number: str, delay_key: str, reset_after_ms: int,
                     budget: BudgetAsk | None = None, circuit: CircuitAsk | None = None) -> GuardsAnswer:
        """Run the storage side of a send's guards, in the order of SPEC section 6: the
        opt-out of `number` (canonical E.164), the exponential delay of `delay_key`, the
        segment `budget` when one counts this send, then the first route's `circuit`.

        Answers exactly what this sequence of single operations answers, and this
        default implementation is that sequence (a backend whose keys cannot meet in
        one atomic step, such as a Redis Cluster, keeps it):
        ``suppression_get``; without a budget ``delay_acquire``; with one
        ``delay_peek``, ``budget_spend``, ``delay_acquire`` (a budget refusal takes no
        delay turn, a delay refusal spends no budget: a spend is taken back when the
        delay then refuses); then, when everything admitted, ``circuit_admit``. A
        storage failure after a spend takes the spend back before it raises.
        """
        if self.suppression_get(number) is not None:
            return GuardsAnswer("suppressed")
        if budget is None:
            wait = self.delay_acquire(delay_key, reset_after_ms)
            if wait:
                return GuardsAnswer("delay", wait)
            return GuardsAnswer(None, circuit=self.circuit_admit(*circuit) if circuit else None)
        wait = self.delay_peek(delay_key, reset_after_ms)
        if wait:
            return GuardsAnswer("delay", wait)
        budget_wait, used, at = self.budget_spend(*budget)
        if budget_wait:
            return GuardsAnswer("budget", budget_wait, used)
        try:
            wait = self.delay_acquire(delay_key, reset_after_ms)
            if wait:
                self._refund_quietly(budget, at)
                return GuardsAnswer("delay", wait, used)
            return GuardsAnswer(None, 0, used, at, self.circuit_admit(*circuit) if circuit else None)
        except BaseException:
            self._refund_quietly(budget, at)
            raise

    def _refund_quietly(self, budget: BudgetAsk, at: float) -> None:
        # A refund that fails leaves the units counted: strict, never loose.
        try:
            self.budget_refund(budget.key, budget.cost, budget.window_ms, at)
        except Exception as exc:
            log.error("could not take back the segments of a send that sent nothing",
                      extra={"country": budget.key, "segments": budget.cost,
                             "error_class": type(exc).__name__})


class BudgetAsk(NamedTuple):
    """The budget a send spends from: `budget_spend`'s arguments."""

    key: str
    cost: int
    limit: int
    window_ms: int


class CircuitAsk(NamedTuple):
    """The circuit of the route a send tries first: `circuit_admit`'s arguments."""

    key: str
    lease_ms: int


@dataclass(frozen=True)
class GuardsAnswer:
    """What `Storage.guards_admit` found.

    `refused` names the guard that refused (``"suppressed"``, ``"delay"``, ``"budget"``)
    or is None when all admitted; `wait_ms` is the refusing delay's or budget's wait.
    `budget_used` is the budget's units after its operation (None when none ran),
    `budget_at` the admitted spend's time (0 when nothing stays spent); `circuit` is
    `circuit_admit`'s answer (None when not asked or refused before it).
    """

    refused: str | None
    wait_ms: int = 0
    budget_used: int | None = None
    budget_at: float = 0.0
    circuit: tuple[str, int] | None = None

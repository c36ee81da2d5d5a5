"""The status webhook deliverer: one background thread per worker that empties the outbox.

It claims due events from STORAGE_URI (atomically, with a lease, so in the normal case one
worker sends each attempt), runs each attempt on a small thread pool so one slow answer
holds up no other, and then deletes, reschedules or gives up on the event. It is woken at
once when this process enqueues an event, and polls about once a second for the events of
other workers and replicas and for retries. Nothing of it runs on a request's thread.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from sms_service import metrics
from sms_service.exceptions import StorageUnavailable
from sms_service.status import model
from sms_service.status.webhooks import ATTEMPT_DEADLINE_S, Attempt, WebhookClient, retry_delay_ms
from sms_service.storage import Storage
from sms_service.storage.base import OutboxEvent

log = logging.getLogger(__name__)

POLL_S = 1.0
THREADS = 8
# A claim hides its event from other workers this long. It must outlast everything the
# claimant does under it, or a second worker posts the same event at the same time: the
# attempt (ATTEMPT_DEADLINE_S, a hard bound since the lookup and every address share it)
# plus its bookkeeping (the outcome's storage write may wait out SQLite's 3 s busy
# timeout; Redis gives up after 0.5 s), at most 5 + 3 = 8 s. 20 s leaves 12 s to spare
# for a stalled process. A worker killed mid-attempt has its events back after it.
LEASE_MS = 20_000
DUE_MARGIN_S = 0.02
# The outbox gauges are refreshed this often (the check-up reads afresh): a count of the
# outbox is not free, and every worker runs one.
STATS_EVERY_S = 10.0
# A storage that fails every poll is said once a minute, not once a second.
COMPLAINT_EVERY_S = 60.0


class Deliverer:
    """Delivers one worker's share of the outbox until `stop`."""

    def __init__(self, storage: Storage, client: WebhookClient, retry_for_ms: float,
                 threads: int = THREADS, lease_ms: int = LEASE_MS, poll_s: float = POLL_S,
                 max_backlog: int | None = None) -> None:
        self.storage = storage
        self.client = client
        self.retry_for_ms = retry_for_ms
        self.max_backlog = max_backlog
        self.threads = threads
        self.lease_ms = lease_ms
        self.poll_s = poll_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._in_flight = 0
        # When the retries this worker scheduled come due (monotonic s), soonest first. An
        # entry leaves only once a claim has been made after it came due: an early wake
        # (a new event, an attempt's end) never makes a retry wait for the poll.
        self._local_due: list[float] = []
        self._complained_at = -COMPLAINT_EVERY_S
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._started_in: int | None = None  # the pid whose threads these are
        self._start_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread and its pool (in the process that will run them: after a fork).

        Again in the same process, it does nothing.
        """
        with self._start_lock:
            if self._started_in == os.getpid():
                return
            self._started_in = os.getpid()
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="webhook-attempt")
            self._thread = threading.Thread(target=self._run, name="webhook-deliverer", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now: this process just enqueued an event."""
        if self._started_in != os.getpid() and not self._stopping.is_set():
            self._start_on_first_event()
        self._wake.set()

    def _start_on_first_event(self) -> None:
        # The packaged serving settings start the deliverer in each worker (and stop it
        # on SIGTERM). Any other server (another gunicorn config, waitress, flask run)
        # never would, and events would pile up in the outbox unsaid: the first event of
        # this process starts it instead, and says so once.
        with self._start_lock:
            if self._started_in == os.getpid():
                return
        log.warning("status webhook deliverer started by this process's first event: it is not a worker of "
                    "the packaged serving settings (sms-service serve), so attempts in flight at exit are "
                    "left to their lease")
        self.start()

    def stop_claiming(self) -> None:
        """Claim nothing more (SIGTERM); attempts in flight go on to their end."""
        self._stopping.set()
        self._wake.set()

    def stop(self, timeout: float = ATTEMPT_DEADLINE_S + 2) -> bool:
        """Stop claiming and wait up to `timeout` s for the attempts in flight; tell whether all ended.

        An attempt still running then is abandoned: its event stays in the outbox, and
        another worker takes it up when the lease runs out.
        """
        self.stop_claiming()
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.client.close()
        return self.in_flight() == 0

    def in_flight(self) -> int:
        """Attempts running now."""
        with self._lock:
            return self._in_flight

    # -- the loop ------------------------------------------------------------------------

    def _run(self) -> None:
        next_stats = 0.0
        while not self._stopping.is_set():
            self._wake.clear()
            claim_at = time.monotonic()
            claimed = True
            try:
                claimed = self._claim_and_start()
                now = time.monotonic()
                if now >= next_stats:  # the gauges cost one read now and then, never a request's time
                    next_stats = now + STATS_EVERY_S
                    self._refresh_gauges()
            except Exception as exc:
                # The thread must outlive any surprise: a dead deliverer would leave this
                # worker's share of the outbox to the others.
                self._complain(f"status webhook deliverer error ({type(exc).__name__}); it goes on")
            self._wake.wait(self._wait_s(claim_at, claimed))

    def _wait_s(self, claim_at: float, claimed: bool) -> float:
        """How long to sleep (unless woken) after a claim made at `claim_at`, or skipped."""
        with self._lock:
            due = self._local_due
            if not claimed:
                # Every thread is busy: the next to end wakes the loop, due retries or not.
                return self.poll_s
            # A retry is looked for when due (a little after: the storage's clock may be
            # Redis's), not at the next poll, so 1 s stays 1 s.
            while due and due[0] + DUE_MARGIN_S <= claim_at:
                heapq.heappop(due)  # due before this claim: the claim looked for it
            if not due:
                return self.poll_s
            return min(self.poll_s, max(0.0, due[0] + DUE_MARGIN_S - time.monotonic()))

    def _claim_and_start(self) -> bool:
        """Claim as many due events as there are free threads and start them; False when none is free."""
        with self._lock:
            free = self.threads - self._in_flight
        if self._pool is None:
            return False
        # With every thread busy (a receiver that hangs), the claim still runs, for nothing
        # but the bounds: expired events and those beyond the cap leave the outbox anyway.
        try:
            claimed = self.storage.guarded(lambda: self.storage.webhook_claim(
                max(0, free), self.lease_ms, self.retry_for_ms, self.max_backlog))
        except StorageUnavailable:
            self._complain("status webhook outbox unreadable; delivery waits for the storage")
            return True
        dropped = [event for event in claimed if event.dropped]
        if dropped:
            self._report_dropped(dropped)
            claimed = [event for event in claimed if not event.dropped]
        if free <= 0:
            return False
        for event in claimed:
            with self._lock:
                self._in_flight += 1
            try:
                # Counted out when done or cancelled by a stop: the lease brings a cancelled one back.
                self._pool.submit(self._deliver, event).add_done_callback(self._done)
            except RuntimeError:  # the pool is shutting down: the lease brings the event back
                self._done(None)
        return True

    def _report_dropped(self, dropped: list[OutboxEvent]) -> None:
        for event in dropped:
            metrics.WEBHOOK_DROPPED.labels(event.dropped).inc()
            why = "its retry period passed" if event.dropped == "expired" else "the outbox was full"
            log.error(f"status webhook event dropped unsent: {why}",
                      extra={"sid": event.record.get("sid"), "webhook_id": event.id,
                             "attempts": event.attempts, "reason": event.dropped})
        self._refresh_gauges()  # the backlog gauge shows the outbox as the bounds left it

    def _refresh_gauges(self) -> None:
        try:
            backlog, oldest_ms = self.storage.guarded(self.storage.webhook_stats)
        except StorageUnavailable:
            return
        metrics.show_webhook_outbox(backlog, (oldest_ms or 0) / 1000)

    def _complain(self, message: str) -> None:
        now = time.monotonic()
        if now - self._complained_at >= COMPLAINT_EVERY_S:
            self._complained_at = now
            log.warning(message)

    # -- one attempt ---------------------------------------------------------------------

    def _deliver(self, event: OutboxEvent) -> None:
        started = time.monotonic()
        try:
            attempt = self.client.attempt(event.id, event.record)
            metrics.count_webhook_attempt(attempt.result)
            if attempt.delivered:
                self.storage.guarded(lambda: self.storage.webhook_delivered(event.id))
            else:
                self._failed(event, attempt, (time.monotonic() - started) * 1000)
        except StorageUnavailable:
            # The outcome is not stored: the lease brings the event back, and a delivered
            # one may be sent again (at least once; receivers de-duplicate by webhook-id).
            self._complain("status webhook outcome not stored; the event will be tried again")
        except Exception:
            log.exception("status webhook attempt failed unexpectedly", extra={"webhook_id": event.id})

    def _done(self, _future: object) -> None:
        with self._lock:
            self._in_flight -= 1
        self._wake.set()  # a slot is free

    def _failed(self, event: OutboxEvent, attempt: Attempt, spent_ms: float) -> None:
        failed = event.attempts + 1
        delay_ms = retry_delay_ms(failed)
        sid = event.record.get("sid")
        fields = {"sid": sid, "webhook_id": event.id, "attempt": failed, "result": attempt.result,
                  "http_status": attempt.status}
        if event.age_ms + spent_ms + delay_ms > self.retry_for_ms:
            failure = {"webhookId": event.id, "status": event.record.get("status"), "attempts": failed,
                       "lastResult": attempt.result, "at": model.timestamp()}
            if self.storage.guarded(lambda: self.storage.webhook_exhausted(event.id, event.lease, failure)):
                metrics.WEBHOOK_EXHAUSTED.inc()
                log.error("status webhook gave up: retries exhausted", extra=fields)
            return
        if self.storage.guarded(lambda: self.storage.webhook_retry(event.id, event.lease, delay_ms)):
            with self._lock:
                heapq.heappush(self._local_due, time.monotonic() + delay_ms / 1000)
            log.info("status webhook attempt failed; will retry", extra={**fields, "retry_in_ms": delay_ms})


def make_deliverer(storage: Storage, url: str, secret: str, retry_for_ms: float,
                   user_agent: str, max_backlog: int | None = None) -> Deliverer:
    """The deliverer of one worker, not started (see `Deliverer.start`)."""
    return Deliverer(storage, WebhookClient(url, secret, THREADS, user_agent), retry_for_ms,
                     max_backlog=max_backlog)


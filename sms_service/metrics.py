"""Prometheus metrics, summed across gunicorn workers (multiprocess mode).

No label ever holds a phone number or a message body: labels are fixed words.

The metrics are declared here and built on first use, with prometheus_client imported
only then: the client picks, once, as it is imported, whether values live in this
process or in the workers' shared files (PROMETHEUS_MULTIPROC_DIR). The packaged gunicorn
settings set that variable after the configuration (which imports this module) is
loaded; a client imported here at import time would count every worker alone, and
/-/metrics would be empty. `tests/test_metrics_import.py` keeps it so.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_build_lock = threading.Lock()


class _Metric:
    """A prometheus_client metric, declared now and built in the process that first uses it."""

    def __init__(self, kind: str, name: str, documentation: str, labelnames: tuple[str, ...] | list[str] = (),
                 **options: Any) -> None:
        self._spec = (kind, name, documentation, tuple(labelnames), options)
        self._metric: Any = None

    def _built(self) -> Any:
        metric = self._metric
        if metric is None:
            with _build_lock:
                if self._metric is None:
                    import prometheus_client

                    kind, name, documentation, labelnames, options = self._spec
                    build = getattr(prometheus_client, kind)
                    self._metric = build(name, documentation, labelnames, **options)
                metric = self._metric
        return metric

    def labels(self, *values: str) -> Any:
        """The child of these label values (see prometheus_client)."""
        return self._built().labels(*values)

    def inc(self, amount: float = 1) -> None:
        """Add `amount` to an unlabelled counter or gauge."""
        self._built().inc(amount)

    def set(self, value: float) -> None:
        """Set an unlabelled gauge."""
        self._built().set(value)

    def get(self) -> float:
        """The value of an unlabelled metric in this process (for tests)."""
        return self._built()._value.get()


def Counter(name: str, documentation: str, labelnames: tuple[str, ...] | list[str] = (),
            **options: Any) -> _Metric:
    """A counter built on first use (prometheus_client.Counter's arguments)."""
    return _Metric("Counter", name, documentation, labelnames, **options)


def Gauge(name: str, documentation: str, labelnames: tuple[str, ...] | list[str] = (),
          **options: Any) -> _Metric:
    """A gauge built on first use (prometheus_client.Gauge's arguments)."""
    return _Metric("Gauge", name, documentation, labelnames, **options)


def Histogram(name: str, documentation: str, labelnames: tuple[str, ...] | list[str] = (),
              **options: Any) -> _Metric:
    """A histogram built on first use (prometheus_client.Histogram's arguments)."""
    return _Metric("Histogram", name, documentation, labelnames, **options)


SEND_REQUESTS = Counter(
    "sms_send_requests_total", "Requests to POST /send by outcome",
    ["status_class", "reason"],
)
MESSAGES_ACCEPTED = Counter(
    "sms_messages_accepted_total", "Messages the provider accepted", ["provider"],
)
SEGMENTS = Counter(
    "sms_segments_total", "Segments of accepted messages", ["provider", "encoding"],
)
GUARD_REJECTIONS = Counter(
    "sms_guard_rejections_total", "Requests refused by an anti-pumping guard", ["guard"],
)
PROVIDER_DURATION = Histogram(
    "sms_provider_request_duration_seconds", "Duration of provider send calls",
    ["provider", "outcome"],
    buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DELIVERY_STATUS = Counter(
    "sms_delivery_status_total", "Messages reaching a delivery status, from provider callbacks",
    ["provider", "status", "country"],
)

SUPPRESSIONS_ADDED = Counter(
    "sms_suppressions_added_total", "Numbers put on the suppression list, by source", ["source"],
)
SUPPRESSIONS_REMOVED = Counter(
    "sms_suppressions_removed_total", "Numbers taken off the suppression list, by source", ["source"],
)
SUPPRESSED_SENDS = Counter(
    "sms_suppressed_sends_total", "Sends refused because the receiver opted out",
)

BUDGET_USE = Gauge(
    "sms_segment_budget_use_ratio",
    "Share of each country's SEGMENT_BUDGETS budget used in its window, as of the last send "
    "or estimate to it (country: configured ISO codes, or other for the fullest of the rest)",
    ["country"], multiprocess_mode="mostrecent",
)
ESTIMATE_REQUESTS = Counter(
    "sms_estimate_requests_total", "Requests to POST /estimate by outcome", ["status_class", "reason"],
)
# Failover (SPEC section 13). `to` is the next provider tried, or "none" when no
# provider was left; `reason` the failure's fixed word (provider_unreachable,
# provider_auth, provider_rate_limited, balance_exhausted, balance_unavailable,
# circuit_open).
FAILOVERS = Counter(
    "sms_failover_total", "Sends that moved on from a provider that provably sent nothing",
    ["from", "to", "reason"],
)
# One series per provider and state, 1 for the state the circuit is in: the most recent
# value any worker saw wins, and every scrape of /-/metrics reads the shared state afresh.
CIRCUIT_STATE = Gauge(
    "sms_circuit_state", "State of each provider's circuit breaker (1: the current state)",
    ["provider", "state"], multiprocess_mode="mostrecent",
)
CIRCUIT_STATES = ("closed", "half-open", "open")


def set_circuit_state(provider: str, state: str) -> None:
    """Show `state` as the current state of `provider`'s circuit."""
    for name in CIRCUIT_STATES:
        CIRCUIT_STATE.labels(provider, name).set(1 if name == state else 0)


_send_children: dict[tuple[int, str], object] = {}


def count_send(status: int, outcome: str) -> None:
    """Count one /send answer; label children are cached (a label lookup takes a lock)."""
    child = _send_children.get((status, outcome))
    if child is None:
        child = _send_children.setdefault(
            (status, outcome), SEND_REQUESTS.labels(f"{status // 100}xx", outcome)
        )
    child.inc()


# SPEC section 18: each message's price, added once (the storage decides which report brings it).
SPEND = Counter(
    "sms_spend", "What providers charged for messages, in each currency's units",
    ["provider", "country", "currency"],
)


def count_spend(provider: str, country: str | None, currency: str, price: str) -> None:
    """Add one message's price to the spend of its provider, country and currency."""
    SPEND.labels(provider, country or "unknown", currency).inc(float(price))


def count_delivery_status(provider: str, status: str, country: str | None) -> None:
    """Count one record moving to `status`; the country is an ISO code or ``unknown``."""
    DELIVERY_STATUS.labels(provider, status, country or "unknown").inc()


def exposition() -> tuple[bytes, str]:
    """Render every metric of the deployment's workers; returns (body, content type)."""
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        REGISTRY,
        CollectorRegistry,
        generate_latest,
        multiprocess,
    )

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


# -- status webhooks (SPEC section 11) -------------------------------------------------

WEBHOOK_RESULTS = ("delivered", "http_error", "redirect", "timeout", "connection_error")
WEBHOOK_ATTEMPTS = Counter(
    "sms_webhook_attempts_total", "Status webhook attempts by result", ["result"],
)
WEBHOOK_EXHAUSTED = Counter(
    "sms_webhook_exhausted_total", "Status webhook events dropped after their last retry",
)
WEBHOOK_DROP_REASONS = ("expired", "backlog")
WEBHOOK_DROPPED = Counter(
    "sms_webhook_dropped_total",
    "Status webhook events dropped unsent: past their retry period (expired) or beyond the "
    "outbox's cap (backlog)",
    ["reason"],
)
# The outbox is the deployment's, read by every worker's deliverer about once a second:
# the figure last read by a live worker is the one to show.
WEBHOOK_BACKLOG = Gauge(
    "sms_webhook_backlog", "Status webhook events waiting in the outbox (the whole deployment)",
    multiprocess_mode="livemostrecent",
)
WEBHOOK_OLDEST_AGE = Gauge(
    "sms_webhook_oldest_pending_seconds", "Age of the oldest status webhook event in the outbox (0: none)",
    multiprocess_mode="livemostrecent",
)


def count_webhook_attempt(result: str) -> None:
    """Count one webhook attempt; `result` is one of WEBHOOK_RESULTS."""
    WEBHOOK_ATTEMPTS.labels(result).inc()


def show_webhook_outbox(backlog: int, oldest_age_s: float) -> None:
    """Set the outbox gauges to what the deliverer just read."""
    WEBHOOK_BACKLOG.set(backlog)
    WEBHOOK_OLDEST_AGE.set(oldest_age_s)


# -- the reconciler (SPEC section 18) ----------------------------------------------------

LOOKUP_OUTCOMES = ("changed", "unchanged", "not_found", "rate_limited", "error")
LOOKUPS = Counter(
    "sms_status_lookups", "Status lookups the reconciler made, by provider and outcome "
    "(changed: the record moved; unchanged; not_found; rate_limited: the provider throttled; error)",
    ["provider", "outcome"],
)
MADE_UNKNOWN = Counter(
    "sms_messages_unknown", "Records made unknown: no final report within MESSAGE_FINAL_AFTER", ["provider"],
)
RECONCILE_LAG = Gauge(
    "sms_reconcile_lag_seconds", "How late the reconciler is: the oldest due record's wait at its last "
    "round (0: nothing overdue)", multiprocess_mode="livemostrecent",
)


def count_lookup(provider: str, outcome: str) -> None:
    """Count one status lookup; `outcome` is one of LOOKUP_OUTCOMES."""
    LOOKUPS.labels(provider, outcome).inc()

"""Prometheus metrics, summed across gunicorn workers (multiprocess mode).

No label ever holds a phone number or a message body: labels are fixed words.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

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


def count_delivery_status(provider: str, status: str, country: str | None) -> None:
    """Count one record moving to `status`; the country is an ISO code or ``unknown``."""
    DELIVERY_STATUS.labels(provider, status, country or "unknown").inc()


def exposition() -> tuple[bytes, str]:
    """Render every metric of the deployment's workers; returns (body, content type)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    return generate_latest(registry), CONTENT_TYPE_LATEST

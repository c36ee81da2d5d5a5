"""The figures of the console's overview (the last 24 h) and its sends-per-hour chart, as SVG."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from sms_service import ops
from sms_service.exceptions import StorageUnavailable
from sms_service.status.listing import HOUR_MS

WINDOW_MS = 24 * HOUR_MS
# A provider's balance is a paid API call at some providers and a slow one at all: the
# overview reads it at most this often per worker, never once per page view.
PROVIDERS_CACHE_S = 60.0
FINAL_DELIVERED = "delivered"
FINAL_FAILED = ("undelivered", "failed")


@dataclass
class ProvidersCache:
    """Each provider's circuit and balance, as /-/check-up reads them, kept for a while."""

    ttl_s: float = PROVIDERS_CACHE_S
    _value: list[dict[str, object]] = field(default_factory=list)
    _read_at: float = float("-inf")
    _wall: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, services: Any) -> tuple[list[dict[str, object]], float]:
        """The providers' states and when they were read (Unix s); reads again once stale."""
        with self._lock:
            if time.monotonic() - self._read_at >= self.ttl_s:
                self._value = ops.provider_states(services, {})
                self._read_at = time.monotonic()
                self._wall = time.time()
            return list(self._value), self._wall


def figures(services: Any, providers: ProvidersCache, now_ms: float | None = None) -> dict[str, Any]:
    """Everything the overview shows; raises `StorageUnavailable` when the records cannot be read."""
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    since_ms = now_ms - WINDOW_MS
    storage = services.storage
    stats = storage.guarded(lambda: storage.message_stats(since_ms))
    by_status = stats["byStatus"]
    delivered = by_status.get(FINAL_DELIVERED, 0)
    failed = sum(by_status.get(status, 0) for status in FINAL_FAILED)
    settled = delivered + failed
    states, read_at = providers.get(services)
    return {
        "total": stats["total"],
        "by_status": sorted(by_status.items(), key=lambda item: (-item[1], item[0])),
        "delivery_rate": None if settled == 0 else round(100 * delivered / settled, 1),
        "settled": settled,
        "failures": sorted(stats["byErrorCode"].items(), key=lambda item: (-item[1], item[0])),
        "countries": _countries(services, stats),
        "providers": states,
        "providers_read_at": read_at,
        "webhooks": _webhooks(services),
        "suppressed": _suppressed(storage),
        "chart": sends_chart(stats["byHour"], now_ms),
    }


def _countries(services: Any, stats: dict[str, Any]) -> list[dict[str, Any]]:
    table = services.settings.segment_budgets
    segments = stats["segmentsByCountry"]
    names = set(segments) | set(stats["spendByCountry"])
    if table is not None:
        names |= set(table.countries)
    rows = []
    for country in sorted(names):
        budget = table.for_country(country) if table is not None else None
        used = None
        if budget is not None:
            try:
                _, used = services.storage.guarded(
                    lambda c=country, b=budget: services.storage.budget_peek(c, 0, b.limit, b.window_ms))
            except StorageUnavailable:
                used = None
        rows.append({
            "country": country,
            "segments": segments.get(country, 0),
            "spend": sorted(stats["spendByCountry"].get(country, {}).items()),
            "budget": budget.describe() if budget is not None else None,
            "budget_shared": budget is not None and country not in table.countries and table.others is budget,
            "budget_used": used,
            "budget_percent": (None if budget is None or used is None
                               else min(100, round(100 * used / budget.limit))),
        })
    return rows


def _webhooks(services: Any) -> dict[str, Any] | None:
    if getattr(services, "webhooks", None) is None:
        return None
    try:
        backlog, oldest_ms = services.storage.guarded(services.storage.webhook_stats)
    except StorageUnavailable:
        return {"backlog": None, "oldest_s": None}
    return {"backlog": backlog, "oldest_s": None if oldest_ms is None else round(oldest_ms / 1000)}


def _suppressed(storage: Any) -> int | None:
    try:
        return len(storage.guarded(storage.suppression_all))
    except StorageUnavailable:
        return None


# -- the chart: one bar per hour of the last 24, drawn on the server -------------------

CHART_WIDTH = 720
CHART_HEIGHT = 180
_LEFT, _BOTTOM, _TOP = 36, 22, 10


def sends_chart(by_hour: dict[str, int], now_ms: float) -> dict[str, Any]:
    """The bars of sends per hour for the 24 hours up to `now_ms`, ready for the SVG template."""
    last_hour = int(now_ms) // HOUR_MS * HOUR_MS
    hours = [last_hour - HOUR_MS * back for back in range(23, -1, -1)]
    counts = [by_hour.get(str(hour), 0) for hour in hours]
    top = max([*counts, 1])
    plot_w, plot_h = CHART_WIDTH - _LEFT - 4, CHART_HEIGHT - _BOTTOM - _TOP
    slot = plot_w / len(hours)
    bars = []
    for index, (hour, count) in enumerate(zip(hours, counts, strict=True)):
        height = plot_h * count / top
        label = time.strftime("%H", time.gmtime(hour / 1000))
        bars.append({
            "x": round(_LEFT + index * slot + 1, 1), "width": round(slot - 2, 1),
            "y": round(_TOP + plot_h - height, 1), "height": round(height, 1),
            "count": count, "label": label, "label_x": round(_LEFT + index * slot + slot / 2, 1),
            "show_label": index % 3 == 0,
        })
    return {"width": CHART_WIDTH, "height": CHART_HEIGHT, "bars": bars, "top": top,
            "axis_y": _TOP + plot_h, "left": _LEFT, "top_y": _TOP, "label_y": CHART_HEIGHT - 6}


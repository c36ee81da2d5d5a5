"""Segment budgets per destination country (SPEC section 14): the SEGMENT_BUDGETS grammar and its guard.

A budget caps the segments sent to one country per sliding window, for the whole
deployment, so a pumping attack that gets past the global rate limit still cannot buy
more than the operator agreed to pay for.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sms_service import metrics
from sms_service.durations import parse_duration_ms
from sms_service.exceptions import MessageOverBudget, SegmentBudgetExceeded, StorageUnavailable
from sms_service.phone import region_problem

if TYPE_CHECKING:  # storage reads Settings, which hold a BudgetTable
    from sms_service.storage import Storage

log = logging.getLogger(__name__)

OTHERS = "*"
# The gauge's label for every country without an entry of its own: the label set stays
# the configured countries plus this one word, whatever countries the traffic reaches.
OTHER_LABEL = "other"
# A destination whose country phonenumbers cannot name (+800, +979...) is counted as one.
UNKNOWN_COUNTRY = "unknown"
MAX_SEGMENTS = 1_000_000_000  # far above any bill; keeps every count exact in Redis' Lua numbers
MAX_WINDOW_MS = 366 * 86_400_000
WARN_AT = 0.8

_ENTRY = re.compile(r"([^=]*)=([^/]*)/(.*)", re.DOTALL)


@dataclass(frozen=True)
class Budget:
    """At most `limit` segments per `window_ms` (written `window` by the operator)."""

    limit: int
    window_ms: int
    window: str

    def describe(self) -> str:
        """The budget as the operator wrote it: ``500 segments per 1h``."""
        return f"{self.limit} segments per {self.window}"


@dataclass(frozen=True)
class BudgetTable:
    """The parsed SEGMENT_BUDGETS: a budget per named country, and one for each other country."""

    countries: Mapping[str, Budget] = field(default_factory=dict)
    others: Budget | None = None

    def for_country(self, country: str) -> Budget | None:
        """The budget that counts `country`'s segments, None when it has none."""
        return self.countries.get(country, self.others)


def parse_budgets(text: str) -> BudgetTable:
    """Parse ``US=20000/1d,IN=5000/1d,*=500/1h``.

    Raises `ValueError` saying which entry is wrong and why (config.py adds the name of
    the variable).
    """
    countries: dict[str, Budget] = {}
    others: Budget | None = None
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            raise ValueError("has an empty entry; write COUNTRY=SEGMENTS/WINDOW entries separated by commas")
        match = _ENTRY.fullmatch(entry)
        if not match:
            raise ValueError(
                f"entry {entry!r} is not COUNTRY=SEGMENTS/WINDOW, such as US=20000/1d or *=500/1h")
        country, limit_text, window_text = (part.strip() for part in match.groups())
        country = country.upper()
        problem = None if country == OTHERS else region_problem(country)
        if problem:
            raise ValueError(f"entry {entry!r}: {problem} (or * for each other country)")
        if country in countries or (country == OTHERS and others is not None):
            raise ValueError(f"names {country} twice")
        if not (limit_text.isascii() and limit_text.isdigit()) or not 0 < int(limit_text) <= MAX_SEGMENTS:
            raise ValueError(f"entry {entry!r}: the segments must be a whole number from 1 to {MAX_SEGMENTS}")
        try:
            window_ms = parse_duration_ms(window_text)
        except ValueError as exc:
            raise ValueError(f"entry {entry!r}: {exc}") from None
        if window_ms > MAX_WINDOW_MS:
            raise ValueError(f"entry {entry!r}: the window must be at most 366 days")
        budget = Budget(int(limit_text), math.ceil(window_ms), window_text)
        if country == OTHERS:
            others = budget
        else:
            countries[country] = budget
    return BudgetTable(countries, others)


@dataclass(frozen=True)
class Spend:
    """One admitted spend of a country's budget: what `SegmentBudgets.refund` takes back."""

    country: str
    segments: int
    budget: Budget
    at: float  # the spend's time by the storage's clock, which finds it again


class SegmentBudgets:
    """The budget guard of one worker: spends (or, for an estimate, peeks at) a country's budget."""

    def __init__(self, table: BudgetTable, storage: Storage) -> None:
        self.table = table
        self.storage = storage
        # Label children bound once; `other` shows the fullest of the other countries.
        self._gauges = {country: metrics.BUDGET_USE.labels(country) for country in table.countries}
        self._other_gauge = metrics.BUDGET_USE.labels(OTHER_LABEL) if table.others else None
        self._other_use: dict[str, float] = {}
        self._other_lock = threading.Lock()

    def applies_to(self, country: str | None) -> bool:
        """Tell whether `country`'s segments are counted by a budget."""
        return self.table.for_country(country or UNKNOWN_COUNTRY) is not None

    def check(self, country: str | None, segments: int, *, consume: bool) -> Spend | None:
        """Count `segments` against `country`'s budget, or with `consume` False only tell whether they fit.

        Returns the `Spend` when segments were counted (None when nothing was: an
        estimate, or a country without a budget). Raises `SegmentBudgetExceeded` (with
        the seconds until enough of the budget frees for these segments),
        `MessageOverBudget` when they exceed the whole budget, or `StorageUnavailable`.
        A refusal counts nothing.
        """
        found = self.budget_for(country, segments)
        if found is None:
            return None
        country, budget = found
        if consume:
            wait_ms, used, at = self.storage.guarded(
                lambda: self.storage.budget_spend(country, segments, budget.limit, budget.window_ms))
        else:
            wait_ms, used = self.storage.guarded(
                lambda: self.storage.budget_peek(country, segments, budget.limit, budget.window_ms))
            at = None
        return self.settle(country, segments, budget, wait_ms, used, at)

    def budget_for(self, country: str | None, segments: int) -> tuple[str, Budget] | None:
        """The country's name as its budget counts it and that budget, or None when it has none.

        Raises `MessageOverBudget` when `segments` exceed the whole budget.
        """
        country = country or UNKNOWN_COUNTRY
        budget = self.table.for_country(country)
        if budget is None:
            return None
        if segments > budget.limit:
            # 429 would have the caller wait for a moment that never comes.
            raise MessageOverBudget(
                f"receiver: a message of {segments} segments is more than the whole budget for "
                f"{country} ({budget.describe()}); it can never be sent there"
            )
        return country, budget

    def settle(self, country: str, segments: int, budget: Budget, wait_ms: int, used: int,
               at: float | None) -> Spend | None:
        """Act on the storage's answer for a spend of `segments` made at `at` (None: a
        peek): the gauge, the refusal, the warning. Returns the `Spend` (None for a peek).

        Raises `SegmentBudgetExceeded` when `wait_ms` says it did not fit.
        """
        self._show_use(country, used / budget.limit)
        if wait_ms > 0:
            raise SegmentBudgetExceeded(
                f"receiver: the segment budget for {country} ({budget.describe()}) has no room for "
                f"this message of {segments} segment{'s' if segments != 1 else ''}",
                retry_after=max(1, math.ceil(wait_ms / 1000)),
            )
        if at is None:
            return None
        if used >= WARN_AT * budget.limit:
            self._warn_once(country, used, budget)
        return Spend(country, segments, budget, at)

    def refund(self, spend: Spend) -> None:
        """Take back `spend`, for a send that provably sent nothing; never raises.

        A refund that fails leaves the segments counted (strict, never loose): it is
        logged, and the answer of the send stays what it was.
        """
        budget = spend.budget
        try:
            self.storage.guarded(lambda: self.storage.budget_refund(
                spend.country, spend.segments, budget.window_ms, spend.at))
        except Exception as exc:  # the promise: never raises
            log.error("could not take back the segments of a send that sent nothing",
                      extra={"country": spend.country, "segments": spend.segments,
                             "error_class": type(exc).__name__})

    def _show_use(self, country: str, ratio: float) -> None:
        gauge = self._gauges.get(country)
        if gauge is not None:
            gauge.set(ratio)
            return
        with self._other_lock:  # the request threads of this worker share the dict
            self._other_use[country] = ratio
            self._other_gauge.set(max(self._other_use.values()))

    def _warn_once(self, country: str, used: int, budget: Budget) -> None:
        # Once per window for the whole deployment: the first worker to reserve the
        # record logs, the record lives one window.
        try:
            first = self.storage.guarded(lambda: self.storage.record_reserve(
                f"budget-warning:{country}", os.urandom(8).hex(), budget.window_ms)) is None
        except StorageUnavailable:
            first = True  # a lost warning hides an attack; a repeated one does not
        if first:
            log.warning(
                "segment budget of %s is %d%% used", country, math.floor(100 * used / budget.limit),
                extra={"country": country, "segments_used": used, "segments_budget": budget.limit,
                       "budget_window": budget.window},
            )

"""Parse RATE_LIMIT_TIME_WINDOW: milliseconds as an integer, or a vercel/ms string."""

from __future__ import annotations

import re

_UNITS_MS = {
    **dict.fromkeys(("ms", "msec", "msecs", "millisecond", "milliseconds"), 1),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1000),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60_000),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3_600_000),
    **dict.fromkeys(("d", "day", "days"), 86_400_000),
    **dict.fromkeys(("w", "week", "weeks"), 604_800_000),
    # vercel/ms counts a year as 365.25 days
    **dict.fromkeys(("y", "yr", "yrs", "year", "years"), 31_557_600_000),
}
# Same grammar as vercel/ms: a number, an optional single space, an optional unit.
_DURATION = re.compile(r"(-?(?:\d+)?\.?\d+) ?([a-z]+)?", re.IGNORECASE | re.ASCII)


def parse_duration_ms(text: str) -> float:
    """Return the duration `text` stands for, in milliseconds.

    Raises ValueError when `text` is not a duration of at least 1 ms.
    """
    text = text.strip()
    if text.isascii() and text.isdigit():
        value = float(int(text))
    else:
        match = _DURATION.fullmatch(text)
        if not match:
            raise ValueError(f"{text!r} is not a duration such as 60000, 30s, 1 minute or 2h")
        number, unit = match.groups()
        factor = _UNITS_MS.get((unit or "ms").lower())
        if factor is None:
            raise ValueError(f"{text!r} has an unknown unit {unit!r}")
        value = float(number) * factor
    if value < 1:
        raise ValueError(f"{text!r} is shorter than 1 ms")
    return value


def format_duration(ms: float) -> str:
    """Say a duration in milliseconds the short way: ``60 s``, ``1.5 s``, ``500 ms``."""
    if ms < 1000:
        return f"{ms:g} ms"
    return f"{ms / 1000:g} s"

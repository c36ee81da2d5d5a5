"""RATE_LIMIT_TIME_WINDOW parsing: integer milliseconds or vercel/ms strings."""

import pytest

from sms_service.durations import parse_duration_ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("60000", 60_000), ("1", 1), ("500ms", 500), ("500 ms", 500), ("2 msecs", 2),
        ("3 milliseconds", 3), ("1 millisecond", 1), ("30s", 30_000), ("1 sec", 1000),
        ("2 secs", 2000), ("1 second", 1000), ("10 seconds", 10_000), ("1m", 60_000),
        ("1 min", 60_000), ("2 mins", 120_000), ("1 minute", 60_000), ("5 minutes", 300_000),
        ("2h", 7_200_000), ("1 hr", 3_600_000), ("2 hrs", 7_200_000), ("1 hour", 3_600_000),
        ("2 hours", 7_200_000), ("1.5h", 5_400_000), ("1d", 86_400_000), ("1 day", 86_400_000),
        ("2 days", 172_800_000), ("1w", 604_800_000), ("1 week", 604_800_000),
        ("2 weeks", 1_209_600_000), ("1y", 31_557_600_000), ("1 yr", 31_557_600_000),
        ("2 yrs", 63_115_200_000), ("1 year", 31_557_600_000), ("1 years", 31_557_600_000),
        (".5s", 500), ("0.5 seconds", 500), ("1 MINUTE", 60_000), ("1M", 60_000),
        ("  30s  ", 30_000), ("1.5", 1.5),
    ],
)
def test_valid_windows(text, ms):
    assert parse_duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize(
    "text",
    ["", " ", "0", "0ms", "0.5ms", "-1s", "-1", "abc", "1 fortnight", "1  s", "s", "1s1",
     "1.2.3s", "1,5h", "1e3", "ten seconds", "1 s s", "0x10", "١٠s"],
)
def test_invalid_windows(text):
    with pytest.raises(ValueError):
        parse_duration_ms(text)

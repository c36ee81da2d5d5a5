"""sms_service.provider_values: the readers every plugin shares."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sms_service.provider_values import Secret, decimal_amount, one_line, setting


def test_setting_treats_empty_as_unset():
    assert setting({"A": "x", "B": ""}, "A") == "x"
    assert setting({"A": "x", "B": ""}, "B") is None
    assert setting({}, "C") is None


def test_one_line_is_printable_single_and_bounded():
    text = one_line("Line one\nline two\r\n\tthree\x00 " + "x" * 500)
    assert text.startswith("Line one line two three x") and text.endswith("...")
    assert len(text) == 200 and text.isprintable()
    assert one_line("short", limit=10) == "short"
    assert one_line("a" * 20, limit=10) == "a" * 7 + "..."


@pytest.mark.parametrize(("value", "amount"), [
    ("0.0333", Decimal("0.0333")), (3.14159, Decimal("3.14159")), (-2, Decimal("-2")), (" 1.50 ", Decimal("1.50")),
    (True, None), (None, None), ("NaN", None), ("Infinity", None), ("1,5", None), ([1], None),
])
def test_decimal_amount(value, amount):
    assert decimal_amount(value) == amount


def test_secret_never_shows():
    secret = Secret("hunter2-value")
    assert secret.value == "hunter2-value"
    assert "hunter2" not in repr(secret) and "hunter2" not in repr([secret]) and "hunter2" not in str(secret)

"""Numbers are ASCII digits only, in every position, and one receiver has one delay key."""

import re
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError
from support.payloads import message

from sms_service import phone, schemas

RECEIVER = "+15558675310"
E164_SENDER = "+15017122661"
SHORT_CODE = "12345"
# One non-ASCII digit of each kind that phonenumbers (and \d, and int()) read as a digit.
ODD_DIGITS = {
    "full-width": "\uff10",
    "arabic-indic": "\u0660",
    "extended arabic-indic": "\u06f0",
    "devanagari": "\u0966",
    "mathematical bold": "\U0001d7ce",
}
NON_ASCII_DIGITS = sorted(
    {chr(c) for c in range(0x80, sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Nd"}
)


def _spelled(text: str, position: int, zero: str) -> str:
    """`text` with the ASCII digit at `position` written in the digit family of `zero`."""
    return text[:position] + chr(ord(zero) + int(text[position])) + text[position + 1:]


def _every_position(text: str) -> list[tuple[str, str]]:
    digits = [i for i, c in enumerate(text) if c in "0123456789"]
    return [(f"{name}@{i}", _spelled(text, i, zero)) for name, zero in ODD_DIGITS.items() for i in digits]


def test_the_odd_digits_really_are_digits_to_python_and_phonenumbers():
    # What made the bug: each spelling reads as the same number everywhere but in our check.
    variant = _spelled(RECEIVER, 5, ODD_DIGITS["arabic-indic"])
    assert variant != RECEIVER and variant[5].isdigit() and re.fullmatch(r"\+[1-9]\d{1,14}", variant)
    assert phone.canonical(variant) == RECEIVER


@pytest.mark.parametrize(("case", "number"), _every_position(RECEIVER))
def test_receiver_with_a_non_ascii_digit_anywhere_is_refused(client, case, number):
    assert not phone.is_e164(number)
    assert not re.search(schemas.RECEIVER_PATTERN, number)
    response = client.post("/send", json={**message(), "receiver": number})
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["message"] == "receiver: not an E.164 phone number"


@pytest.mark.parametrize(("case", "sender"), _every_position(E164_SENDER) + _every_position(SHORT_CODE))
def test_sender_with_a_non_ascii_digit_anywhere_is_refused(client, case, sender):
    assert not re.search(schemas.SENDER_PATTERN, sender)
    response = client.post("/send", json=message(sender=sender))
    assert response.status_code == 400, response.get_json()
    assert response.get_json()["message"].startswith("sender: not an E.164 number")


@pytest.mark.parametrize("sender", ["\u0661\u0662\u0663", "\uff11\uff12\uff13\uff14", "ACME\u0661", "\u0661ACME"])
def test_other_non_ascii_senders_are_refused(sender):
    with pytest.raises(ValidationError):
        schemas.validate_sender(sender)


@settings(max_examples=300, deadline=None)
@given(digit=st.sampled_from(NON_ASCII_DIGITS), data=st.data())
def test_any_unicode_digit_in_any_position_is_refused(digit, data):
    for valid in (RECEIVER, E164_SENDER, SHORT_CODE):
        position = data.draw(st.integers(min_value=int(valid.startswith("+")), max_value=len(valid) - 1))
        number = valid[:position] + digit + valid[position + 1:]
        assert not phone.is_e164(number)
        assert not phone.SHORT_CODE.fullmatch(number)
        assert not re.search(schemas.SENDER_PATTERN, number)
        assert not re.search(schemas.RECEIVER_PATTERN, number)
        with pytest.raises(ValidationError):
            schemas.validate_sender(number)
        with pytest.raises(ValidationError):
            schemas.validate_receiver(number)


def test_the_openapi_patterns_say_ascii_digits(client):
    document = client.get("/documentation/json").get_data(as_text=True)
    assert "[0-9]" in document
    assert "\\\\d" not in document


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+15558675310", "+15558675310"),
        ("+4407911123456", "+447911123456"),  # a national prefix after the country code
        ("+447911123456", "+447911123456"),
        ("+390612345678", "+390612345678"),  # Italy keeps its leading zero
        ("not a number", "not a number"),
    ],
)
def test_canonical(number, expected):
    assert phone.canonical(number) == expected


def test_two_spellings_of_one_receiver_share_one_delay():
    from sms_service.config import load_settings
    from sms_service.exceptions import ReceiverTooSoon
    from sms_service.guards import Guards
    from sms_service.storage import open_storage

    settings_ = load_settings({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"})
    guards = Guards(settings_, open_storage("memory://"))
    assert phone.is_e164("+4407911123457") and phone.is_possible("+4407911123457")
    guards.check_delay("+447911123457")
    with pytest.raises(ReceiverTooSoon):
        guards.check_delay("+4407911123457")

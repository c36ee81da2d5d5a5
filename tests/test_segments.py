"""GSM-7 / UCS-2 segment counting (SPEC section 5)."""

import pytest

from sms_service.segments import count_segments

EMOJI = "\U0001F600"


@pytest.mark.parametrize(
    ("body", "encoding", "count"),
    [
        ("hello", "GSM-7", 1),
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 200, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        (f"Hi {EMOJI} there", "UCS-2", 1),
        ("Price 5€ ^ now", "GSM-7", 1),
        ("a" * 158 + "€", "GSM-7", 1),
        ("a" * 159 + "€", "GSM-7", 2),
        # the escape pair may not straddle parts: 152 + 2 does not fit in 153
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),
        ("{}" * 40, "GSM-7", 1),
        ("{}" * 41, "GSM-7", 2),
        ("\f" * 80, "GSM-7", 1),
        ("line\r\nbreak", "GSM-7", 1),
        (EMOJI * 35, "UCS-2", 1),
        (EMOJI * 36, "UCS-2", 2),
        # the surrogate pair may not straddle parts: 66 + 2 does not fit in 67
        ("Ж" * 66 + EMOJI + "Ж" * 66, "UCS-2", 3),
        ("Ж" * 70, "UCS-2", 1),
        ("Ж" * 71, "UCS-2", 2),
        ("Ж" * 134, "UCS-2", 2),
        ("Ж" * 135, "UCS-2", 3),
        ("Ç", "GSM-7", 1),
        ("ç", "UCS-2", 1),  # lower-case c cedilla is not in the GSM default alphabet
        ("a" * 1600, "GSM-7", 11),
    ],
)
def test_segments(body, encoding, count):
    result = count_segments(body)
    assert (result.encoding, result.count) == (encoding, count)

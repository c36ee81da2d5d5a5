"""One rule for Kaleyra's message id: the send's answer and the delivery report name one record.

Kaleyra's answer may carry the id at the top level, only per recipient in
``data[0].message_id`` with a ``:<part>`` suffix, or both; its reports name either. Each
shape must give the id the report is matched under (issue 22, finding 2).
"""

from __future__ import annotations

import json

import pytest
import responses

from sms_service.provider import CallbackRequest, Message
from sms_service_kaleyra.provider import KaleyraProvider, message_id

API_KEY = "A0123456789abcdef0123456789abcdef"
SID = "HXAP1649996084IN"
MESSAGES_URL = f"https://api.kaleyra.io/v1/{SID}/messages"
CALLBACK = "https://sms.example.com/callbacks/kaleyra/status?token=abc"
UUID = "d0b238ef-4a2c-4c8b-9b55-1f3e2a8c9d10"
MESSAGE = Message(sender="KLRHXA", receiver="+917499623342", body="Your code is 123456", num_segments=1,
                  encoding="GSM-7", status_callback=CALLBACK)


@pytest.fixture
def provider():
    p = KaleyraProvider({"KALEYRA_API_KEY": API_KEY, "KALEYRA_SID": SID}, timeout=5, callback_url=CALLBACK)
    yield p
    p.close()


def _sent_sid(provider: KaleyraProvider, answer: dict) -> str:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as http:
        http.add(responses.POST, MESSAGES_URL, status=202, json=answer)
        return provider.send(MESSAGE).sid


def _reported_sid(provider: KaleyraProvider, reported: str) -> str:
    payload = {"message_id": reported, "status": "DELIVRD", "to": "917499623342"}
    request = CallbackRequest(url=CALLBACK, headers={"content-type": "application/json"},
                              body=json.dumps(payload).encode(), json=payload)
    [update] = provider.parse_status_callback(request)
    return update.sid


ANSWERS = {
    "top-level id only": {"id": UUID, "error": {}},
    "documented: id and data[0].message_id with :1": {
        "id": UUID, "sender": "KLRHXA", "type": "OTP", "totalCount": 1, "error": {},
        "data": [{"message_id": f"{UUID}:1", "recipient": "917499623342"}]},
    "only data[0].message_id with :1": {"data": [{"message_id": f"{UUID}:1", "recipient": "917499623342"}],
                                        "error": {}},
    "only data[0].message_id without a suffix": {"data": [{"message_id": UUID}], "error": {}},
    "top-level id with a part suffix": {"id": f"{UUID}:1", "error": {}},
    "empty top-level id, data[0].message_id with :2": {"id": "", "data": [{"message_id": f"{UUID}:2"}]},
    "id with spaces around it": {"id": f"  {UUID}  "},
}


@pytest.mark.parametrize("answer", ANSWERS.values(), ids=ANSWERS.keys())
@pytest.mark.parametrize("reported", [UUID, f"{UUID}:1", f"{UUID}:12"])
def test_the_stored_sid_is_the_sid_reports_are_matched_under(provider, answer, reported):
    sid = _sent_sid(provider, answer)
    assert sid == UUID
    assert _reported_sid(provider, reported) == sid


@pytest.mark.parametrize(("raw", "expected"), [
    (UUID, UUID), (f"{UUID}:1", UUID), (f" {UUID}:3 ", UUID),
    ("abc:def", "abc:def"),        # only a numeric part suffix is a recipient's part
    ("12345", "12345"), (":1", ":1"),
])
def test_one_rule_for_the_id(raw, expected):
    assert message_id(raw) == expected

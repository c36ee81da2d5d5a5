"""Kaleyra delivery reports: the callback field on the send, tolerant parsing, the status table."""

from __future__ import annotations

import json

import pytest
import responses
from responses import matchers

from sms_service.provider import CallbackRequest, Message, StatusUpdate
from sms_service_kaleyra.provider import KaleyraProvider

API_KEY = "A0123456789abcdef0123456789abcdef"
SID = "HXAP1649996084IN"
MESSAGES_URL = f"https://api.kaleyra.io/v1/{SID}/messages"
CALLBACK = "https://sms.example.com/callbacks/kaleyra/status?token=abc"
MESSAGE_ID = "d0b238ef-4a2c-4c8b-9b55-1f3e2a8c9d10"


@pytest.fixture
def provider():
    p = KaleyraProvider({"KALEYRA_API_KEY": API_KEY, "KALEYRA_SID": SID}, timeout=5, callback_url=CALLBACK)
    yield p
    p.close()


def report(payload) -> CallbackRequest:
    return CallbackRequest(url=CALLBACK, headers={"content-type": "application/json"},
                           body=json.dumps(payload).encode(), json=payload)


def test_cannot_sign_so_the_service_adds_a_token():
    assert KaleyraProvider.callbacks_signed is False
    assert KaleyraProvider.supports_status() is True


def test_send_asks_for_a_delivery_report_at_the_callback_url(provider):
    message = Message(sender="KLRHXA", receiver="+917499623342", body="Your code is 123456", num_segments=1,
                      encoding="GSM-7", status_callback=CALLBACK)
    expected = {"to": message.receiver, "sender": "KLRHXA", "body": message.body,
                "callback": json.dumps({"url": CALLBACK, "method": "POST"})}
    with responses.RequestsMock(assert_all_requests_are_fired=True) as http:
        http.add(responses.POST, MESSAGES_URL, status=202, json={"id": MESSAGE_ID, "error": {}},
                 match=[matchers.urlencoded_params_matcher(expected)])
        assert provider.send(message).sid == MESSAGE_ID


@pytest.mark.parametrize(("word", "status"), [
    ("DELIVRD", "delivered"), ("Delivered", "delivered"), ("delivered", "delivered"),
    ("UNDELIV", "undelivered"), ("Undelivered", "undelivered"), ("EXPIRED", "undelivered"),
    ("REJECTD", "undelivered"), ("Rejected", "undelivered"),
    ("NOT-SENT", "failed"), ("Failed", "failed"), ("FAILED", "failed"),
    ("SUBMITTED", "sent"), ("SENT - NO DLR", "sent"), ("ENROUTE", "sent"), ("Sent", "sent"),
    ("something new", "sent"),
])
def test_status_table_keeps_the_raw_word(provider, word, status):
    updates = provider.parse_status_callback(report({"id": MESSAGE_ID, "status": word}))
    assert updates == [StatusUpdate(sid=MESSAGE_ID, status=status, provider_status=word)]


@pytest.mark.parametrize(("id_field", "status_field"), [
    ("id", "status"), ("message_id", "message_status"), ("sid", "dlr_status"), ("message_id", "status"),
])
def test_id_and_status_under_any_known_name(provider, id_field, status_field):
    updates = provider.parse_status_callback(report({id_field: MESSAGE_ID, status_field: "DELIVRD"}))
    assert [(u.sid, u.status) for u in updates] == [(MESSAGE_ID, "delivered")]


def test_a_recipient_part_id_names_the_message(provider):
    updates = provider.parse_status_callback(report({"message_id": f"{MESSAGE_ID}:1", "status": "DELIVRD",
                                                     "to": "917499623342", "trace": "OPT-OUT"}))
    # The OPT-OUT trace also tells the service to suppress the receiver (SPEC section 12).
    assert updates == [StatusUpdate(sid=MESSAGE_ID, status="delivered", provider_status="DELIVRD",
                                    error_code="OPT-OUT", receiver="+917499623342", opted_out=True)]


@pytest.mark.parametrize(("fields", "opted_out"), [
    ({"status": "NOT-SENT", "trace": "OPT-OUT"}, True),
    ({"status": "Failed", "error_code": "opt-out"}, True),
    ({"status": "UNDELIV", "trace_code": "OPT_OUT"}, True),
    ({"status": "OPT-OUT"}, True),
    ({"status": "UNDELIV", "trace": "CON-DND"}, False),
    ({"status": "UNDELIV", "trace": "BLACKLIST"}, False),
    ({"status": "DELIVRD"}, False),
    ({"status": "UNDELIV", "reason": "the user did not opt out"}, False),
])
def test_the_opt_out_trace_marks_the_update(provider, fields, opted_out):
    (update,) = provider.parse_status_callback(report({"id": MESSAGE_ID, "to": "917499623342", **fields}))
    assert update.opted_out is opted_out


def test_lists_and_data_lists_and_form_fields(provider):
    many = [{"id": "a", "status": "DELIVRD"}, {"id": "b", "status": "UNDELIV"}, "junk", {"status": "x"}]
    assert [(u.sid, u.status) for u in provider.parse_status_callback(report(many))] == [
        ("a", "delivered"), ("b", "undelivered")]
    wrapped = provider.parse_status_callback(report({"data": many[:2]}))
    assert [u.sid for u in wrapped] == ["a", "b"]
    form = CallbackRequest(url=CALLBACK, headers={}, body=b"", form={"sid": ("c",), "dlr_status": ("EXPIRED",)})
    assert [(u.sid, u.status) for u in provider.parse_status_callback(form)] == [("c", "undelivered")]


def test_a_body_that_is_no_report_is_unreadable(provider):
    with pytest.raises(ValueError):
        provider.parse_status_callback(CallbackRequest(url=CALLBACK, headers={}, body=b"hello"))
    assert provider.parse_status_callback(report({"unrelated": 1})) == []


def test_kaleyra_cannot_look_messages_up():
    # No lookup in Kaleyra's API that the plugin uses: the reconciler leaves its records to MESSAGE_FINAL_AFTER.
    assert not KaleyraProvider.supports_fetch_status()

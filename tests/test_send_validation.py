"""POST /send request validation and the error JSON of every route (in process)."""

import pytest
from support.payloads import REFERENCE, fresh_receiver, message

OK = "ok"


def assert_error(response, status, contains=""):
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"statusCode", "error", "message"}
    assert body["statusCode"] == str(status)
    assert isinstance(body["error"], str) and body["error"]
    assert contains in body["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def test_reference_example_succeeds(client):
    response = client.post("/send", json=REFERENCE)
    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"dateEvent", "numSegments", "sid", "status"}
    assert all(isinstance(v, str) for v in body.values())
    assert body["numSegments"] == "1" and body["status"] == "queued"
    import re

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["dateEvent"])


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("sender", "+15017122661", OK),
        ("sender", "+1", "sender:"),
        ("sender", "12345", OK),
        ("sender", "123", OK),
        ("sender", "12", "sender:"),
        ("sender", "123456789", "sender:"),
        ("sender", "ACME", OK),
        ("sender", "My Shop 24", OK),
        ("sender", "A", OK),
        ("sender", "ABCDEFGHIJKL", "sender:"),
        ("sender", "ACME!", "sender:"),
        ("sender", "Äcme", "sender:"),
        ("sender", "", "sender:"),
        ("sender", "+1501712266\u0661", "sender:"),  # a non-ASCII digit after an ASCII start
        ("sender", "12\uff1345", "sender:"),
        ("sender", "\u0661\u0662\u0663", "sender:"),
        ("sender", 12345, "sender:"),
        ("sender", None, "sender:"),
        ("receiver", "+15558675310", OK),
        ("receiver", "15558675310", "receiver: not an E.164"),
        ("receiver", "0015558675310", "receiver: not an E.164"),
        ("receiver", "+1 555 867 5310", "receiver: not an E.164"),
        ("receiver", "+1555867531O", "receiver: not an E.164"),
        ("receiver", "+05558675310", "receiver: not an E.164"),
        ("receiver", "+1234567890123456", "receiver: not an E.164"),
        ("receiver", "+15558675310\n", "receiver: not an E.164"),
        ("receiver", "+١٥٥٥٨٦٧٥٣١٠", "receiver: not an E.164"),
        ("receiver", "+1\u0665\u0665\u0665\u0668\u0666\u0667\u0665\u0663\u0661\u0660", "receiver: not an E.164"),
        ("receiver", "+1555867531\uff10", "receiver: not an E.164"),
        ("receiver", "+155586\u096d5310", "receiver: not an E.164"),
        ("receiver", "+1555", "receiver: not a possible"),
        ("receiver", "+4412", "receiver: not a possible"),
        ("receiver", 15558675310, "receiver:"),
        ("receiver", ["+15558675310"], "receiver:"),
        ("body", "x", OK),
        ("body", "a" * 1600, OK),
        ("body", "a" * 1601, "body: longer than 1600"),
        ("body", "", "body:"),
        ("body", "   \n\t ", "body:"),
        ("body", "line one\nline two\r\n", OK),
        ("body", "tab\there", "body: contains a control character"),
        ("body", "nul\x00", "body: contains a control character"),
        ("body", "bell\x07", "body: contains a control character"),
        ("body", "c1\x85", "body: contains a control character"),
        ("body", "\ud800 lone", "body: contains an invalid Unicode"),
        ("body", "Привет 😀 \u200f rtl", OK),
        ("body", {"text": "hi"}, "body:"),
        ("body", True, "body:"),
    ],
)
def test_field_rules(client, field, value, expected):
    payload = message(**{field: value}) if field != "receiver" else {**message(), "receiver": value}
    response = client.post("/send", json=payload)
    if expected == OK:
        assert response.status_code == 200, response.get_json()
    else:
        assert_error(response, 400, expected)


@pytest.mark.parametrize("missing", ["sender", "receiver", "body"])
def test_missing_field(client, missing):
    payload = message()
    del payload[missing]
    assert_error(client.post("/send", json=payload), 400, f"{missing}: is required")


def test_unknown_field(client):
    assert_error(client.post("/send", json={**message(), "priority": "high"}), 400, "priority: unknown field")


@pytest.mark.parametrize(
    ("data", "contains"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('"text"', "must be a JSON object"),
        ("null", "must be a JSON object"),
        ("42", "must be a JSON object"),
        ("{bad json", "not valid JSON"),
        ("", "not valid JSON"),
        ("[" * 10000, "not valid JSON"),
        ('{"a":' * 3000, "not valid JSON"),
    ],
)
def test_not_an_object(client, data, contains):
    assert_error(client.post("/send", data=data, content_type="application/json"), 400, contains)


def test_invalid_utf8(client):
    assert_error(client.post("/send", data=b'{"body": "\xff\xfe"}', content_type="application/json"), 400)


def test_body_over_16_kib_is_413(client):
    data = '{"sender": "ACME", "receiver": "+15558675310", "body": "' + "a" * 17000 + '"}'
    assert_error(client.post("/send", data=data, content_type="application/json"), 413)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_other_content_type_is_415(client, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    assert_error(client.post("/send", data='{"sender": "ACME"}', **kwargs), 415, "application/json")


def test_json_with_charset_is_accepted(client):
    import json

    response = client.post("/send", data=json.dumps(message()), content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_unknown_route_is_json_404(client):
    assert_error(client.get("/nowhere"), 404)


def test_wrong_method_is_json_405_with_allow(client):
    response = client.get("/send")
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_request_id_is_echoed_or_made(client):
    assert client.get("/-/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    made = client.get("/-/healthz", headers={"X-Request-Id": "bad id\twith spaces"}).headers["X-Request-Id"]
    assert made and " " not in made and made != "bad id\twith spaces"
    assert client.post("/send", json={}).headers["X-Request-Id"]


def test_validation_error_does_not_reach_the_provider(client, caplog):
    caplog.set_level("INFO")
    client.post("/send", json={**message(), "receiver": "+1555"})
    assert not [r for r in caplog.records if "console provider" in r.getMessage()]


def test_message_segments_counted_locally_for_console(client):
    response = client.post("/send", json=message(body="a" * 200, receiver=fresh_receiver()))
    assert response.get_json()["numSegments"] == "2"


def test_unknown_field_names_are_cut_short_in_the_message(client):
    response = client.post("/send", json={**message(), "k" * 5000: 1})
    body = assert_error(response, 400, "unknown field")
    assert len(body["message"]) < 100

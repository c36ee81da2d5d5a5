"""Message templates (SPEC section 16): rendering, versions, the admin routes, preview, /send and /estimate."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging

import pytest
import responses

from sms_service.app import create_app
from sms_service.exceptions import ProviderUnreachable
from sms_service.failover import Failover, Route
from sms_service.provider import Message, Provider, Receipt
from sms_service.templates import placeholders
from sms_service.templates.placeholders import PlaceholderError

ADMIN = "admin-key-0123456789abcdef0123"
API = "api-key-0123456789abcdef012345"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
RECEIVER = "+15558675310"
OTP = "Your code is ((code)). Valid for ((Minutes)) minutes."


def render(body: str, personalisation: dict) -> str:
    return placeholders.render(placeholders.parse(body), personalisation)


# -- placeholders and rendering --------------------------------------------------------


@pytest.mark.parametrize(("body", "values", "expected"), [
    ("Hi ((name))", {"name": "Ann"}, "Hi Ann"),
    ("Hi (( First Name ))!", {"first name": "Ann"}, "Hi Ann!"),  # trimmed, any case
    ("Hi ((FIRST name))", {"  First Name ": "Ann"}, "Hi Ann"),
    ("((a))((A)) ((b-2_c))", {"a": "x", "B-2_C": "y"}, "xx y"),
    ("(((code)))", {"code": "1"}, "(1)"),  # a parenthesis around a placeholder stays literal
    ("call (us) now", {}, "call (us) now"),
    ("Code ((code))", {"code": "((x))"}, "Code ((x))"),  # values are verbatim, never parsed again
    ("((a)) and ((b))", {"a": "((b))", "b": "2"}, "((b)) and 2"),
    ("Ünïcode ((nom))", {"NOM": "Zoë"}, "Ünïcode Zoë"),
])
def test_render(body, values, expected):
    assert render(body, values) == expected


@pytest.mark.parametrize(("body", "message"), [
    ("Hi ((name", "the placeholder opened at character 4 is not closed with '))'"),
    ("Hi ((a ((b)) ", "the placeholder opened at character 4 is not closed"),
    ("Hi name)) ok", "'))' at character 8 closes no placeholder"),
    ("Hi (()) ok", "the placeholder at character 4 is empty"),
    ("Hi ((   )) ok", "the placeholder at character 4 is empty"),
    ("Hi ((a.b))", "the placeholder at character 4 is not a name"),
    ("Hi ((" + "x" * 65 + "))", "the placeholder at character 4 is not a name of 1 to 64"),
    (" ".join(f"(({i}))" for i in range(21)), "21 distinct placeholders; a template may have at most 20"),
])
def test_bad_bodies_name_the_position(body, message):
    with pytest.raises(PlaceholderError) as caught:
        placeholders.parse(body)
    assert message in str(caught.value)


def test_twenty_placeholders_render_and_repeats_count_once():
    body = " ".join(f"((p{i}))" for i in range(20)) + " ((P0))"
    values = {f"p{i}": str(i) for i in range(20)}
    assert render(body, values) == " ".join(str(i) for i in range(20)) + " 0"


@pytest.mark.parametrize(("values", "message"), [
    ({}, "missing code, Minutes"),
    ({"minutes": "5"}, "missing code"),
    ({"code": "1", "minutes": "5", "extra": "x"}, "extra is not used by the template"),
    ({"code": "1", "minutes": "5", "a": "x", "b": "y"}, "a, b are not used by the template"),
    ({"code": "1", "CODE": "2", "minutes": "5"}, "CODE is given twice"),
    ({"cod": "1", "minutes": "5"}, "missing code; cod is not used by the template"),
    ({"code": 1, "minutes": "5"}, "code: not a string"),
    ({"code": "1" * 1601, "minutes": "5"}, "code: longer than 1600 characters"),
])
def test_personalisation_errors_name_keys_never_values(values, message):
    with pytest.raises(PlaceholderError) as caught:
        render(OTP, values)
    assert message in str(caught.value)
    assert "1" * 10 not in str(caught.value)


# -- the app ---------------------------------------------------------------------------


@pytest.fixture
def app(tmp_path):
    return create_app({"SERVICE_PROVIDER": "console", "ADMIN_API_KEYS": ADMIN,
                       "STORAGE_URI": f"sqlite:///{tmp_path}/state.db"})


@pytest.fixture
def client(app):
    return app.test_client()


def put(client, name, body, **extra):
    return client.put(f"/templates/{name}", json={"body": body, **extra}, headers=AUTH)


_receivers = itertools.count(1000)


def send(client, headers=None, receiver=None, **fields):
    # A new receiver each time, unless given: the exponential delay is not what these test.
    receiver = receiver or f"+1555867{next(_receivers):04d}"
    return client.post("/send", json={"sender": "ACME", "receiver": receiver, **fields}, headers=headers or {})


def test_put_creates_version_one_and_the_same_content_keeps_it(client):
    first = put(client, "otp", OTP, description="login code")
    assert first.status_code == 201
    body = first.get_json()
    assert body["version"] == 1 and body["placeholders"] == ["code", "Minutes"] and body["archived"] is False
    assert body["description"] == "login code" and body["providerIds"] == {}
    assert body["createdAt"].endswith("Z")
    again = put(client, "otp", OTP, description="login code")
    assert again.status_code == 200 and again.get_json()["version"] == 1
    # Any part of the content makes a new version: body, description or ids.
    assert put(client, "otp", OTP).get_json()["version"] == 2
    assert put(client, "otp", OTP, providerIds={"kaleyra": {"template_id": "1107"}}).get_json()["version"] == 3
    latest = client.get("/templates/otp", headers=AUTH).get_json()
    assert latest["version"] == 3 and latest["providerIds"] == {"kaleyra": {"template_id": "1107"}}
    assert [v["version"] for v in latest["versions"]] == [1, 2, 3]
    one = client.get("/templates/otp/versions/1", headers=AUTH).get_json()
    assert one["description"] == "login code" and one["version"] == 1


def test_archive_then_restore_by_a_put_of_the_same_content(client):
    put(client, "otp", OTP)
    assert client.delete("/templates/otp", headers=AUTH).status_code == 204
    assert client.delete("/templates/otp", headers=AUTH).get_json()["message"] == "template otp is already archived"
    refused = send(client, template="otp", personalisation={"code": "1", "minutes": "5"})
    assert refused.status_code == 404 and refused.get_json()["message"] == "template: otp is archived"
    assert client.get("/templates/otp/versions/1", headers=AUTH).status_code == 200  # versions stay readable
    assert client.get("/templates/otp", headers=AUTH).get_json()["archived"] is True
    back = put(client, "otp", OTP)
    assert back.status_code == 201 and back.get_json()["version"] == 2
    assert send(client, template="otp", personalisation={"code": "1", "minutes": "5"}).status_code == 200


def test_an_old_version_is_still_sendable_by_number(client, caplog):
    put(client, "otp", "Old ((code))")
    put(client, "otp", "New ((code))")
    with caplog.at_level(logging.INFO, logger="sms_service.console_provider"):
        old = send(client, template="otp", templateVersion=1, personalisation={"code": "4242"})
    assert old.status_code == 200, old.get_json()
    record = client.get(f"/messages/{old.get_json()['sid']}").get_json()
    assert record["template"] == {"name": "otp", "version": 1}
    latest = send(client, template="otp", personalisation={"code": "4242"})
    assert client.get(f"/messages/{latest.get_json()['sid']}").get_json()["template"] == {"name": "otp",
                                                                                          "version": 2}
    missing = send(client, template="otp", templateVersion=3, personalisation={"code": "1"})
    assert missing.status_code == 404 and missing.get_json()["message"] == "templateVersion: otp has no version 3"


def test_list_names_every_template(client):
    put(client, "b", "two")
    put(client, "a", "one")
    client.delete("/templates/b", headers=AUTH)
    listed = client.get("/templates", headers=AUTH).get_json()["templates"]
    assert [(t["name"], t["archived"]) for t in listed] == [("a", False), ("b", True)]


@pytest.mark.parametrize(("body", "message"), [
    ({"body": "Hi ((name"}, "body: the placeholder opened at character 4 is not closed"),
    ({"body": ""}, "body: must not be empty"),
    ({"body": "x" * 1601}, "body: longer than 1600"),
    ({"body": "ok", "providerIds": {"kaleyra": {"template_id": 5}}}, "providerIds.kaleyra.template_id"),
    ({"body": "ok", "providerIds": {"kaleyra": "1107"}}, "providerIds.kaleyra"),
    ({"body": "ok", "extra": 1}, "extra: unknown field"),
    ({}, "body: is required"),
])
def test_put_refuses_bad_content(client, body, message):
    answer = client.put("/templates/otp", json=body, headers=AUTH)
    assert answer.status_code == 400, answer.get_json()
    assert message in answer.get_json()["message"]


def test_admin_routes_need_the_admin_key_and_do_not_exist_without_one(client, tmp_path):
    assert client.put("/templates/otp", json={"body": "x"}).status_code == 401
    assert client.get("/templates", headers={"Authorization": f"Bearer {API}"}).status_code == 401
    assert client.put("/templates/Bad.Name", json={"body": "x"}, headers=AUTH).status_code == 400
    plain = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": f"sqlite:///{tmp_path}/other.db"})
    for method, path in (("put", "/templates/otp"), ("get", "/templates/otp"), ("get", "/templates"),
                         ("delete", "/templates/otp"), ("get", "/templates/otp/versions/1")):
        answer = getattr(plain.test_client(), method)(path, json={"body": "x"}, headers=AUTH)
        assert answer.status_code == 404 and answer.get_json()["statusCode"] == "404"


# -- sending with a template -----------------------------------------------------------


@pytest.mark.parametrize(("fields", "status", "message"), [
    ({"template": "otp", "personalisation": {"code": "1"}}, 400, "personalisation: missing Minutes"),
    ({"template": "otp", "personalisation": {"code": "1", "minutes": "5", "name": "x"}}, 400,
     "personalisation: name is not used by the template"),
    ({"template": "otp", "body": "x", "personalisation": {}}, 400, "template: give either body or template"),
    ({}, 400, "body: is required, or template and personalisation"),
    ({"personalisation": {"code": "1"}}, 400, "template: is required with personalisation"),
    ({"template": "otp", "personalisation": {"code": 1, "minutes": "5"}}, 400,
     "personalisation: code: not a string"),
    ({"template": "otp", "personalisation": {"code": "1", "minutes": "5"}, "templateVersion": 0}, 400,
     "templateVersion"),
    ({"template": "nope", "personalisation": {}}, 404, "template: no template named nope"),
    ({"template": "Bad!", "personalisation": {}}, 400, "template: not a template name"),
    ({"template": "otp", "personalisation": {"code": "\x07", "minutes": "5"}}, 400,
     "personalisation: the rendered body breaks a body rule: contains a control character"),
    ({"template": "otp", "personalisation": {"code": "9" * 1600, "minutes": "5"}}, 400,
     "personalisation: the rendered body breaks a body rule: longer than 1600 characters"),
])
def test_send_with_a_template_refuses_with_the_problem_named(client, fields, status, message):
    put(client, "otp", OTP)
    for path in ("/send", "/estimate"):
        answer = client.post(path, json={"sender": "ACME", "receiver": RECEIVER, **fields})
        assert answer.status_code == status, (path, answer.get_json())
        assert message in answer.get_json()["message"], (path, answer.get_json())
        assert "9" * 20 not in answer.get_data(as_text=True)


def test_a_rendered_body_over_the_limit_by_a_value_is_refused_and_at_the_limit_passes(client):
    put(client, "long", "x" * 1590 + "((v))")
    assert send(client, template="long", personalisation={"v": "y" * 10}).status_code == 200
    over = send(client, template="long", personalisation={"v": "y" * 11})
    assert over.status_code == 400 and "longer than 1600" in over.get_json()["message"]


def test_segments_count_on_the_rendered_text_and_ucs2_values_change_them(client):
    put(client, "hello", "Hello ((name)), " + "x" * 140)
    ascii_ = client.post("/estimate", json={"sender": "ACME", "receiver": RECEIVER, "template": "hello",
                                            "personalisation": {"name": "Ann"}}).get_json()
    assert (ascii_["numSegments"], ascii_["encoding"]) == ("1", "GSM-7")
    ucs2 = client.post("/estimate", json={"sender": "ACME", "receiver": RECEIVER, "template": "hello",
                                          "personalisation": {"name": "Ан"}}).get_json()
    assert (ucs2["numSegments"], ucs2["encoding"]) == ("3", "UCS-2")
    sent = send(client, template="hello", personalisation={"name": "Ан"})
    assert sent.get_json()["numSegments"] == "3"


def test_preview_renders_and_sends_nothing(tmp_path):
    app = create_app({"SERVICE_PROVIDER": "console", "ADMIN_API_KEYS": ADMIN, "API_KEYS": API,
                      "STORAGE_URI": f"sqlite:///{tmp_path}/state.db"})
    client = app.test_client()
    put(client, "otp", OTP)
    put(client, "otp", "v2 ((code)) ((minutes))")
    caller = {"Authorization": f"Bearer {API}"}
    answer = client.post("/templates/otp/preview", json={"personalisation": {"CODE": "1234", "minutes": "5"},
                                                         "templateVersion": 1}, headers=caller)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"body": "Your code is 1234. Valid for 5 minutes.", "numSegments": "1",
                                 "encoding": "GSM-7", "version": 1}
    assert client.post("/templates/otp/preview", json={"personalisation": {}}, headers=AUTH).status_code == 401
    missing = client.post("/templates/otp/preview", json={"personalisation": {"code": "1"}}, headers=caller)
    assert missing.status_code == 400 and missing.get_json()["message"] == "personalisation: missing minutes"
    assert client.post("/templates/zzz/preview", json={}, headers=caller).status_code == 404
    assert client.post("/templates/otp/preview", data="x", headers=caller).status_code == 415
    assert app.extensions["sms_service"].storage.message_get("console:x") is None


def test_the_record_and_storage_hold_the_template_never_the_personalisation(app, client, caplog):
    put(client, "otp", OTP)
    with caplog.at_level(logging.DEBUG):
        answer = send(client, template="otp", personalisation={"code": "777123", "minutes": "5"})
    assert answer.status_code == 200
    record = client.get(f"/messages/{answer.get_json()['sid']}").get_json()
    assert record["template"] == {"name": "otp", "version": 1}
    assert "777123" not in caplog.text
    storage = app.extensions["sms_service"].storage
    with storage._conn() as conn:  # every table of the SQLite file, dumped
        dump = "\n".join(conn.iterdump())
    assert "777123" not in dump and '"template":{"name":"otp","version":1}' in dump


def test_an_idempotent_replay_with_other_personalisation_is_422(client):
    put(client, "otp", OTP)
    key = {"Idempotency-Key": "order-1"}
    first = send(client, key, RECEIVER, template="otp", personalisation={"code": "1", "minutes": "5"})
    assert first.status_code == 200
    replay = send(client, key, RECEIVER, template="otp", personalisation={"code": "1", "minutes": "5"})
    assert replay.headers.get("Idempotent-Replayed") == "true" and replay.get_json() == first.get_json()
    other = send(client, key, RECEIVER, template="otp", personalisation={"code": "2", "minutes": "5"})
    assert other.status_code == 422
    assert "different request" in other.get_json()["message"]
    # The version asked for (or its absence) is part of the request as sent.
    assert send(client, key, RECEIVER, template="otp", templateVersion=1,
                personalisation={"code": "1", "minutes": "5"}).status_code == 422
    # A template refused before any send frees its key for a retry.
    missing = send(client, {"Idempotency-Key": "order-2"}, "+15558675320", template="otp",
                   personalisation={"code": "1"})
    assert missing.status_code == 400
    assert send(client, {"Idempotency-Key": "order-2"}, "+15558675320", template="otp",
                personalisation={"code": "1"}).status_code == 400  # the same request again: not replayed
    assert send(client, {"Idempotency-Key": "order-2"}, "+15558675320", template="otp",
                personalisation={"code": "1", "minutes": "5"}).status_code == 200


def test_the_idempotency_record_holds_no_guessable_hash_of_the_personalisation(app, client):
    import hashlib

    put(client, "otp", "Code ((code))")
    payload = {"sender": "ACME", "receiver": RECEIVER, "template": "otp", "personalisation": {"code": "123456"}}
    assert client.post("/send", json=payload, headers={"Idempotency-Key": "k-1"}).status_code == 200
    plain = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False,
                                      separators=(",", ":")).encode()).hexdigest()
    storage = app.extensions["sms_service"].storage
    with storage._conn() as conn:
        dump = "\n".join(conn.iterdump())
    assert "123456" not in dump and plain not in dump


@responses.activate
def test_kaleyra_gets_its_template_id_and_twilio_none(tmp_path):
    app = create_app({"SERVICE_PROVIDER": "kaleyra", "KALEYRA_API_KEY": "k" * 32, "KALEYRA_SID": "HXAP1",
                      "ADMIN_API_KEYS": ADMIN, "STORAGE_URI": f"sqlite:///{tmp_path}/state.db"})
    client = app.test_client()
    responses.post("https://api.kaleyra.io/v1/HXAP1/messages", status=200, json={
        "id": "kal-1", "data": [{"message_id": "kal-1:1"}], "error": {}})
    put(client, "otp", "Code ((code))", providerIds={"kaleyra": {"template_id": "1107161234567890123"},
                                                    "twilio": {"template_id": "not-for-kaleyra"}})
    answer = send(client, template="otp", personalisation={"code": "123456"})
    assert answer.status_code == 200, answer.get_json()
    form = dict(pair.split("=", 1) for pair in responses.calls[0].request.body.split("&"))
    assert form["template_id"] == "1107161234567890123" and form["body"] == "Code+123456"
    plain = client.post("/send", json={"sender": "ACME", "receiver": "+15558675311", "body": "plain"})
    assert plain.status_code == 200
    assert "template_id" not in responses.calls[1].request.body


class _Recording(Provider):
    """Records each message it is given; fails with `error` (nothing sent) when one is set."""

    def __init__(self, error=None):
        super().__init__({}, timeout=1)
        self.error, self.messages = error, []

    def send(self, message):
        self.messages.append(message)
        if self.error is not None:
            raise self.error
        return Receipt(sid="SM1", status="queued", date_event=dt.datetime.now(dt.UTC))


def test_under_failover_each_provider_gets_its_own_template_ids_only():
    first, second = _Recording(ProviderUnreachable("refused")), _Recording()
    failover = Failover([Route("kaleyra", first), Route("vonage", second)])
    message = Message(sender="ACME", receiver=RECEIVER, body="Code 1", num_segments=1, encoding="GSM-7",
                      template_ids={"template_id": "1107"})
    route, _, _ = failover.send(message, {"kaleyra": {"template_id": "1107"},
                                          "vonage": {"entity-id": "1201", "content-id": "1107"}})
    assert route.name == "vonage"
    assert dict(first.messages[0].template_ids) == {"template_id": "1107"}
    assert dict(second.messages[0].template_ids) == {"entity-id": "1201", "content-id": "1107"}
    # A provider without ids for the template gets none (not the first provider's).
    third = _Recording()
    Failover([Route("kaleyra", _Recording(ProviderUnreachable("refused"))), Route("twilio", third)]).send(
        message, {"kaleyra": {"template_id": "1107"}})
    assert dict(third.messages[0].template_ids) == {}


def test_a_record_with_the_old_unkeyed_fingerprint_still_replays_and_still_refuses_another_request():
    import hashlib

    from sms_service.exceptions import IdempotencyMismatch
    from sms_service.idempotency import Idempotency, StoredAnswer
    from sms_service.storage import MemoryStorage

    storage = MemoryStorage()
    idempotency = Idempotency(storage, ttl_s=60, stale_after_s=60)
    payload = {"sender": "ACME", "receiver": RECEIVER, "body": "hello"}
    legacy = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False,
                                       separators=(",", ":")).encode()).hexdigest()
    receipt = {"sid": "SM1", "status": "queued", "numSegments": "1", "dateEvent": "2026-01-01T00:00:00.000Z"}
    storage.record_reserve(Idempotency._name("k", ""), json.dumps(
        {"state": "done", "fingerprint": legacy, "status": 200, "body": receipt, "retry_after": None}), 60_000)
    assert idempotency.begin("k", "", payload) == StoredAnswer(200, receipt)
    with pytest.raises(IdempotencyMismatch):
        idempotency.begin("k", "", {**payload, "body": "other"})

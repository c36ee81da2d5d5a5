"""Opt-out suppression in process (SPEC section 12): keywords, the guard, inbound replies,
learned opt-outs, the admin API, metrics and logs.

Twilio and Kaleyra are faked with `responses`; inbound posts are signed here,
independently of the plugin's own signer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from urllib.parse import urlencode

import pytest
import responses
from prometheus_client import REGISTRY
from support.payloads import fresh_receiver, message
from support.service import KALEYRA_KEY, KALEYRA_SID, TWILIO_SID, TWILIO_TOKEN

from sms_service.app import create_app
from sms_service.exceptions import ConfigError
from sms_service.provider import Provider, Receipt
from sms_service.status.callbacks import callback_token
from sms_service.suppression.keywords import START, STOP, classify

PUBLIC = "https://sms.example.com"
TWILIO_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
KALEYRA_URL = f"https://api.kaleyra.io/v1/{KALEYRA_SID}/messages"
INBOUND = f"{PUBLIC}/callbacks/twilio/inbound"
SECRET = "s3cret-callback-secret-0123456789"
ADMIN_KEY, OTHER_ADMIN_KEY = "admin-0123456789abcdef", "admin-fedcba9876543210"
API_KEY = "api-key-0123456789abcdef"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def sign(url: str, fields: dict[str, str], token: str = TWILIO_TOKEN) -> str:
    text = url + "".join(name + fields[name] for name in sorted(fields))
    return base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha1).digest()).decode()


def twilio_app(storage_uri="memory://", **extra):
    return create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                       "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "STORAGE_URI": storage_uri,
                       "PUBLIC_BASE_URL": PUBLIC, "ADMIN_API_KEYS": f"{ADMIN_KEY},{OTHER_ADMIN_KEY}", **extra})


def console_app(storage_uri="memory://", **extra):
    return create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": storage_uri,
                       "PUBLIC_BASE_URL": "http://127.0.0.1:9", "CALLBACK_SECRET": SECRET,
                       "ADMIN_API_KEYS": ADMIN_KEY, **extra})


def inbound_fields(sender: str, body: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": "SM" + "9" * 32, "SmsSid": "SM" + "9" * 32, "AccountSid": TWILIO_SID,
            "From": sender, "To": "+15017122661", "Body": body, "NumSegments": "1", "ApiVersion": "2010-04-01",
            **extra}


def post_inbound(client, fields: dict[str, str], signature: str | None = None):
    return client.post("/callbacks/twilio/inbound", data=urlencode(fields),
                       headers={"X-Twilio-Signature": sign(INBOUND, fields) if signature is None else signature},
                       content_type="application/x-www-form-urlencoded")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def on_list(client, number: str):
    return client.get(f"/suppressions/{number}", headers=ADMIN)


# -- keywords ----------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "expected"), [
    *[(word, STOP) for word in ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT")],
    ("stop", STOP), ("Stop", STOP), ("sToP", STOP), ("  STOP  ", STOP), ("\tstop\r\n", STOP),
    ("OPT OUT", STOP), ("opt out", STOP), (" Opt  Out ", STOP), ("optout", STOP),
    ("START", START), ("start", START), ("YES", START), (" yes ", START), ("UNSTOP", START), ("Unstop", START),
    # Two-word bodies that must not count, and other text.
    ("STOP NOW", None), ("please stop", None), ("stop stop", None), ("END IT", None), ("YES PLEASE", None),
    ("OPT", None), ("OUT", None), ("OPT OUT NOW", None), ("OPTOUT NOW", None),
    ("STOP.", None), ("S T O P", None), ("STOPP", None), ("HELP", None), ("INFO", None), ("", None),
    ("   ", None), ("don't stop", None),
    # Unicode that upper-cases to a keyword is not what anybody typed.
    ("\u017ftop", None), ("\uff33\uff34\uff2f\uff30", None),
])
def test_keywords(body, expected):
    assert classify(body) == expected


@pytest.mark.parametrize(("body", "opt_out_type", "expected"), [
    ("please no more", "STOP", STOP), ("ok", "START", START), ("stop", "HELP", STOP), ("HELP", "HELP", None),
    ("anything", "stop", STOP), ("STOP", None, STOP), ("START", "", START), ("hello", "UNKNOWN", None),
])
def test_twilio_opt_out_type_wins_when_it_says_stop_or_start(body, opt_out_type, expected):
    assert classify(body, opt_out_type) == expected


# -- the guard ---------------------------------------------------------------------------


def test_a_suppressed_receiver_gets_403_without_a_provider_call_or_delay_consumed(storage_uri):
    client = twilio_app(storage_uri).test_client()
    receiver = fresh_receiver()
    assert client.put(f"/suppressions/{receiver}", headers=ADMIN).status_code == 200
    refused_before = sample("sms_suppressed_sends_total")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(TWILIO_URL, status=201, json={"sid": "SM" + "1" * 32, "status": "queued"})
        for _ in range(3):
            answer = client.post("/send", json=message(receiver=receiver))
            assert answer.status_code == 403
            assert answer.get_json() == {"statusCode": "403", "error": "Forbidden",
                                         "message": "receiver: this number has opted out"}
        assert len(mock.calls) == 0
        assert sample("sms_suppressed_sends_total") == refused_before + 3
        assert client.delete(f"/suppressions/{receiver}", headers=ADMIN).status_code == 204
        # The refusals consumed no delay: the first send now passes, and only it starts the streak.
        assert client.post("/send", json=message(receiver=receiver)).status_code == 200
        assert client.post("/send", json=message(receiver=receiver)).status_code == 429
        assert len(mock.calls) == 1


def test_guard_runs_after_validation_and_destination_policy():
    client = twilio_app(ALLOWED_COUNTRIES="GB").test_client()
    receiver = fresh_receiver()
    client.put(f"/suppressions/{receiver}", headers=ADMIN)
    assert client.post("/send", json=message(receiver=receiver, body="")).status_code == 400
    refused = client.post("/send", json=message(receiver=receiver))
    assert refused.status_code == 403 and "country" in refused.get_json()["message"]


def test_guard_fails_closed_when_the_storage_is_down():
    app = twilio_app()
    storage = app.extensions["sms_service"].storage

    def down(number):
        raise OSError("storage down")

    storage.suppression_get = down
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        answer = app.test_client().post("/send", json=message())
        assert len(mock.calls) == 0
    assert answer.status_code == 503


# -- inbound replies ---------------------------------------------------------------------


def test_signed_twilio_stop_then_start(caplog):
    client = twilio_app().test_client()
    person = fresh_receiver()
    added = sample("sms_suppressions_added_total", source="inbound")
    with caplog.at_level(logging.INFO):
        answer = post_inbound(client, inbound_fields(person, " Stop "))
    assert answer.status_code == 200
    assert answer.mimetype == "text/xml" and answer.data == b"<Response/>"
    entry = on_list(client, person).get_json()
    assert entry["source"] == "inbound" and entry["number"] == f"+1***{person[-2:]}"
    assert sample("sms_suppressions_added_total", source="inbound") == added + 1
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        assert client.post("/send", json=message(receiver=person)).status_code == 403
        assert len(mock.calls) == 0
    removed = sample("sms_suppressions_removed_total", source="inbound")
    assert post_inbound(client, inbound_fields(person, "START")).status_code == 200
    assert on_list(client, person).status_code == 404
    assert sample("sms_suppressions_removed_total", source="inbound") == removed + 1
    text = "\n".join(r.getMessage() + json.dumps(r.__dict__, default=str) for r in caplog.records)
    assert person not in text and person[1:] not in text


def test_twilio_opt_out_type_adds_even_when_the_body_is_not_a_keyword():
    client = twilio_app().test_client()
    person = fresh_receiver()
    assert post_inbound(client, inbound_fields(person, "arret", OptOutType="STOP")).status_code == 200
    assert on_list(client, person).status_code == 200
    assert post_inbound(client, inbound_fields(person, "ok go", OptOutType="START")).status_code == 200
    assert on_list(client, person).status_code == 404


@pytest.mark.parametrize("body", ["HELP", "stop please", "Thanks!", ""])
def test_other_replies_change_nothing(body):
    client = twilio_app().test_client()
    person = fresh_receiver()
    answer = post_inbound(client, inbound_fields(person, body, **({"OptOutType": "HELP"} if body == "HELP" else {})))
    assert answer.status_code == 200 and answer.data == b"<Response/>"
    assert on_list(client, person).status_code == 404


def test_start_of_a_number_not_on_the_list_is_fine():
    client = twilio_app().test_client()
    assert post_inbound(client, inbound_fields(fresh_receiver(), "START")).status_code == 200


def test_forged_inbound_posts_are_refused_and_change_nothing(caplog):
    client = twilio_app().test_client()
    person = fresh_receiver()
    fields = inbound_fields(person, "STOP")
    forged = [
        "", "bm90IGEgc2lnbmF0dXJl", sign(INBOUND, fields, token="x" * 32),
        sign(f"{PUBLIC}/callbacks/twilio/status", fields),  # a status signature opens no inbound route
        sign(INBOUND, {**fields, "From": fresh_receiver()}),
    ]
    for signature in forged:
        with caplog.at_level(logging.WARNING):
            answer = post_inbound(client, fields, signature=signature)
        assert answer.status_code == 403 and answer.get_json()["statusCode"] == "403"
    other_account = {**fields, "AccountSid": "AC" + "f" * 32}
    assert post_inbound(client, other_account).status_code == 403
    assert on_list(client, person).status_code == 404
    assert any(r.getMessage() == "inbound message refused" and r.levelno == logging.WARNING
               for r in caplog.records)


def test_inbound_is_off_without_public_base_url_and_for_another_provider():
    client = create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                         "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "STORAGE_URI": "memory://"}).test_client()
    fields = inbound_fields(fresh_receiver(), "STOP")
    assert post_inbound(client, fields).status_code == 404
    assert twilio_app().test_client().post("/callbacks/kaleyra/inbound", json={}).status_code == 404


def test_console_takes_inbound_posts_with_the_url_token():
    client = console_app().test_client()
    person = fresh_receiver()
    token = callback_token(SECRET, "console")
    path = f"/callbacks/console/inbound?token={token}"
    for bad in ("/callbacks/console/inbound", f"/callbacks/console/inbound?token={token[:-1]}x"):
        assert client.post(bad, json={"from": person, "body": "STOP"}).status_code == 403
    assert on_list(client, person).status_code == 404
    answer = client.post(path, json={"from": person, "body": "STOP"})
    assert answer.status_code == 200 and answer.data == b""
    assert on_list(client, person).get_json()["source"] == "inbound"
    assert client.post("/send", json=message(receiver=person)).status_code == 403
    assert client.post(path, data={"From": person, "Body": "unstop"}).status_code == 200
    assert client.post("/send", json=message(receiver=person)).status_code == 200
    assert client.post(path, json={"body": "STOP"}).status_code == 400


def test_a_plugin_without_inbound_support_keeps_working():
    import datetime as dt

    class Plain(Provider):
        def send(self, message):
            return Receipt(sid="PL1", status="queued", date_event=dt.datetime.now(dt.UTC))

    assert Plain.supports_inbound() is False and Plain.inbound_answer == ("text/plain", b"")
    app = console_app()
    services = app.extensions["sms_service"]
    # The route is what sends and takes callbacks (sms_service.failover).
    services.provider = services.dispatcher.provider = services.route("console").provider = Plain({}, timeout=1)
    client = app.test_client()
    token = callback_token(SECRET, "console")
    answer = client.post(f"/callbacks/console/inbound?token={token}", json={"from": "+15558675310", "body": "STOP"})
    assert answer.status_code == 404
    assert client.post("/send", json=message()).get_json()["sid"] == "PL1"


# -- learned from providers --------------------------------------------------------------


def test_twilio_21610_adds_the_receiver_and_the_next_send_is_refused_locally(caplog):
    client = twilio_app().test_client()
    person = fresh_receiver()
    learned = sample("sms_suppressions_added_total", source="provider")
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(TWILIO_URL, status=400, json={"code": 21610, "message": "Attempt to send to unsubscribed recipient",
                                                "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400})
        with caplog.at_level(logging.INFO):
            answer = client.post("/send", json=message(receiver=person))
    assert answer.status_code == 400 and "21610" in answer.get_json()["message"]
    assert on_list(client, person).get_json()["source"] == "provider"
    assert sample("sms_suppressions_added_total", source="provider") == learned + 1
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        assert client.post("/send", json=message(receiver=person)).status_code == 403
        assert len(mock.calls) == 0
    assert all(person not in r.getMessage() and person not in json.dumps(r.__dict__, default=str)
               for r in caplog.records)


def test_another_twilio_rejection_adds_nothing():
    client = twilio_app().test_client()
    person = fresh_receiver()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(TWILIO_URL, status=400, json={"code": 21211, "message": "Invalid 'To' Phone Number"})
        assert client.post("/send", json=message(receiver=person)).status_code == 400
    assert on_list(client, person).status_code == 404


def test_kaleyra_opt_out_trace_on_a_delivery_report_adds_the_receiver():
    client = create_app({"SERVICE_PROVIDER": "kaleyra", "KALEYRA_SID": KALEYRA_SID, "KALEYRA_API_KEY": KALEYRA_KEY,
                         "STORAGE_URI": "memory://", "PUBLIC_BASE_URL": PUBLIC, "CALLBACK_SECRET": SECRET,
                         "ADMIN_API_KEYS": ADMIN_KEY}).test_client()
    person, other = fresh_receiver(), fresh_receiver()
    path = f"/callbacks/kaleyra/status?token={callback_token(SECRET, 'kaleyra')}"
    report = {"id": "kal-9", "status": "NOT-SENT", "trace": "OPT-OUT", "to": person[1:]}
    assert client.post(path, json=report).status_code == 200
    assert on_list(client, person).get_json()["source"] == "provider"
    # Another trace adds nothing; a forged report adds nothing.
    assert client.post(path, json={"id": "kal-10", "status": "UNDELIV", "trace": "CON-DND", "to": other}).status_code == 200
    assert client.post("/callbacks/kaleyra/status?token=x", json={**report, "to": other}).status_code == 403
    assert on_list(client, other).status_code == 404


# -- admin API ---------------------------------------------------------------------------


def test_admin_routes_answer_404_without_admin_api_keys():
    client = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://",
                         "API_KEYS": API_KEY}).test_client()
    for method in ("put", "get", "delete"):
        for headers in ({}, ADMIN, {"Authorization": f"Bearer {API_KEY}"}):
            answer = getattr(client, method)("/suppressions/+15558675310", headers=headers)
            assert answer.status_code == 404 and answer.get_json()["statusCode"] == "404"


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer ", f"Basic {ADMIN_KEY}", f"Bearer {ADMIN_KEY}x", f"Bearer {ADMIN_KEY[:-1]}",
    f"Bearer {API_KEY}", "Bearer admin-0123456789abcdeF",
])
def test_admin_api_rejects_missing_and_wrong_keys(authorization):
    app = console_app(API_KEYS=API_KEY)
    client = app.test_client()
    number = fresh_receiver()
    headers = {} if authorization is None else {"Authorization": authorization}
    for method in ("put", "get", "delete"):
        answer = getattr(client, method)(f"/suppressions/{number}", headers=headers)
        assert answer.status_code == 401, (method, answer.get_json())
        assert answer.headers["WWW-Authenticate"].lower().startswith("bearer")
        assert answer.get_json()["message"].startswith("an admin key is required: send Authorization: Bearer "
                                                       "<one of ADMIN_API_KEYS>")
    assert app.extensions["sms_service"].storage.suppression_get(number) is None


def test_admin_put_get_delete_with_either_key():
    client = console_app(ADMIN_API_KEYS=f"{ADMIN_KEY},{OTHER_ADMIN_KEY}").test_client()
    number = fresh_receiver()
    put = client.put(f"/suppressions/{number}", headers=ADMIN)
    assert put.status_code == 200
    entry = put.get_json()
    assert set(entry) == {"number", "source", "since"}
    assert entry["number"] == f"+1***{number[-2:]}" and entry["source"] == "admin"
    assert entry["since"].endswith("Z") and len(entry["since"]) == 24
    assert number not in put.get_data(as_text=True)
    # A second PUT keeps the first entry; the URL-encoded plus is the same number.
    again = client.put(f"/suppressions/%2B{number[1:]}", headers={"Authorization": f"bearer {OTHER_ADMIN_KEY}"})
    assert again.get_json() == entry
    assert client.get(f"/suppressions/{number}", headers=ADMIN).get_json() == entry
    assert client.delete(f"/suppressions/{number}", headers=ADMIN).status_code == 204
    missing = client.get(f"/suppressions/{number}", headers=ADMIN)
    assert missing.status_code == 404 and number not in missing.get_data(as_text=True)
    assert client.delete(f"/suppressions/{number}", headers=ADMIN).status_code == 404


@pytest.mark.parametrize("number", ["15558675310", "+0123", "+1 555 867 5310", "+1555867531O", "+1", "%2B1",
                                    "+1555867531099999", "+１５５５８６７５３１０", "+999123"])
def test_admin_api_refuses_numbers_that_are_not_e164(number):
    client = console_app().test_client()
    answer = client.put(f"/suppressions/{number}", headers=ADMIN)
    assert answer.status_code == 400
    assert answer.get_json()["message"] == "number: not an E.164 phone number"


def test_admin_keys_must_differ_from_api_keys():
    with pytest.raises(ConfigError) as info:
        create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://", "API_KEYS": API_KEY,
                    "ADMIN_API_KEYS": f"{ADMIN_KEY},{API_KEY}"})
    assert str(info.value).startswith("ADMIN_API_KEYS") and API_KEY not in str(info.value)
    with pytest.raises(ConfigError, match="^ADMIN_API_KEYS"):
        create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://", "ADMIN_API_KEYS": "short"})


def test_openapi_documents_the_inbound_and_admin_routes():
    spec = twilio_app().test_client().get("/documentation/json").get_json()
    inbound = spec["paths"]["/callbacks/{provider}/inbound"]["post"]
    assert {"200", "403", "404"} <= set(inbound["responses"])
    admin = spec["paths"]["/suppressions/{number}"]
    assert set(admin) >= {"put", "get", "delete"}
    assert admin["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Suppression"}
    assert {"401", "404"} <= set(admin["delete"]["responses"])
    assert admin["put"]["security"] == [{"adminKey": []}]
    assert spec["components"]["securitySchemes"]["adminKey"]["scheme"] == "bearer"


def test_a_warning_at_start_up_when_the_list_lives_in_process_memory(caplog, tmp_path):
    with caplog.at_level(logging.WARNING):
        create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"})
    assert any("suppression list lives in process memory" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": f"sqlite:///{tmp_path}/s.db"})
    assert not any("suppression list" in r.getMessage() for r in caplog.records)

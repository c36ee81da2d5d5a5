"""Delivery status in process: records at send, callbacks, GET /messages/{sid}, configuration.

Twilio is faked with `responses`; the callbacks are signed here, independently of the
plugin's own signer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from urllib.parse import urlencode

import pytest
import redis
import responses
from prometheus_client import REGISTRY
from support.payloads import message
from support.redis_topologies import stored_bytes
from support.service import KALEYRA_KEY, KALEYRA_SID, TWILIO_SID, TWILIO_TOKEN

from sms_service.app import create_app
from sms_service.exceptions import ConfigError
from sms_service.provider import Provider, Receipt
from sms_service.status.callbacks import callback_token, callback_url

PUBLIC = "https://sms.example.com"
TWILIO_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
KALEYRA_URL = f"https://api.kaleyra.io/v1/{KALEYRA_SID}/messages"
CALLBACK = f"{PUBLIC}/callbacks/twilio/status"
SECRET = "s3cret-callback-secret-0123456789"
KEY_A, KEY_B = "key-a-0123456789abcdef", "key-b-0123456789abcdef"


def sign(url: str, fields: dict[str, str], token: str = TWILIO_TOKEN) -> str:
    text = url + "".join(name + fields[name] for name in sorted(fields))
    return base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha1).digest()).decode()


def twilio_app(storage_uri="memory://", **extra):
    return create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                       "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "STORAGE_URI": storage_uri,
                       "PUBLIC_BASE_URL": PUBLIC, **extra})


def send_twilio(client, sid: str, payload=None, headers=None):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(TWILIO_URL, status=201, json={"sid": sid, "status": "queued", "num_segments": "1",
                                                "date_created": "Thu, 26 Nov 2026 08:00:00 +0000"})
        answer = client.post("/send", json=payload or message(), headers=headers or {})
        sent = dict(pair.split("=", 1) for pair in mock.calls[0].request.body.split("&"))
    assert answer.status_code == 200, answer.get_json()
    return answer, sent


def status_fields(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": TWILIO_SID, "From": "+15017122661",
            "To": "+15558675310", "MessageStatus": status, "SmsStatus": status, "ApiVersion": "2010-04-01",
            **extra}


def post_callback(client, fields: dict[str, str], signature: str | None = None, path="/callbacks/twilio/status",
                  **headers):
    if signature is None:
        signature = sign(CALLBACK, fields)
    return client.post(path, data=urlencode(fields), headers={"X-Twilio-Signature": signature, **headers},
                       content_type="application/x-www-form-urlencoded")


# -- twilio end to end in process --------------------------------------------------------


def test_send_stores_a_record_and_callbacks_move_it(storage_uri):
    client = twilio_app(storage_uri).test_client()
    sid = "SM" + "1" * 32
    answer, sent = send_twilio(client, sid)
    assert "StatusCallback" in sent
    record = client.get(f"/messages/{sid}")
    assert record.status_code == 200
    body = record.get_json()
    assert (body["status"], body["receiver"][:2], body["country"], body["numSegments"]) == ("queued", "+1", "US", "1")
    assert body["dateEvent"] == answer.get_json()["dateEvent"] == "2026-11-26T08:00:00.000Z"
    for status in ("delivered", "queued", "sent"):
        # The Host header is the caller's: the signed URL comes from PUBLIC_BASE_URL alone.
        response = post_callback(client, status_fields(sid, status), Host="evil.example.net")
        assert response.status_code == 200 and response.data == b""
    body = client.get(f"/messages/{sid}").get_json()
    assert body["status"] == "delivered"
    assert [h["providerStatus"] for h in body["history"]] == ["queued", "delivered", "sent"]
    assert set(body) == {"sid", "provider", "receiver", "country", "numSegments", "encoding", "dateEvent",
                         "status", "providerStatus", "errorCode", "updatedAt", "price", "priceUnit", "history",
                         "template"}
    assert body["template"] is None  # a plain body, no template


def test_forged_and_unsigned_callbacks_are_refused_and_change_nothing(caplog):
    client = twilio_app().test_client()
    sid = "SM" + "2" * 32
    send_twilio(client, sid)
    before = client.get(f"/messages/{sid}").get_json()
    fields = status_fields(sid, "failed", ErrorCode="30003")
    signed_for_host = sign("http://evil.example.net/callbacks/twilio/status", fields)
    for signature in ("", "bm90IGEgc2lnbmF0dXJl", sign(CALLBACK, fields, token="x" * 32), signed_for_host):
        with caplog.at_level(logging.WARNING):
            response = post_callback(client, fields, signature=signature, Host="evil.example.net")
        assert response.status_code == 403
        assert response.get_json()["statusCode"] == "403"
    assert client.get(f"/messages/{sid}").get_json() == before
    assert any(r.getMessage() == "status callback refused" and r.levelno == logging.WARNING for r in caplog.records)


def test_callback_before_the_send_is_kept_and_merged():
    client = twilio_app().test_client()
    sid = "SM" + "3" * 32
    assert post_callback(client, status_fields(sid, "delivered")).status_code == 200
    assert client.get(f"/messages/{sid}").status_code == 404  # an orphan is no send's record yet
    send_twilio(client, sid)
    body = client.get(f"/messages/{sid}").get_json()
    assert body["status"] == "delivered" and [h["status"] for h in body["history"]] == ["queued", "delivered"]


def test_json_callback_signed_with_body_hash():
    client = twilio_app().test_client()
    sid = "SM" + "4" * 32
    send_twilio(client, sid)
    raw = json.dumps(status_fields(sid, "undelivered", ErrorCode="30005")).encode()
    digest = hashlib.sha256(raw).hexdigest()
    url = f"{CALLBACK}?bodySHA256={digest}"
    response = client.post(f"/callbacks/twilio/status?bodySHA256={digest}", data=raw,
                           content_type="application/json", headers={"X-Twilio-Signature": sign(url, {})})
    assert response.status_code == 200
    body = client.get(f"/messages/{sid}").get_json()
    assert (body["status"], body["errorCode"]) == ("undelivered", "30005")
    tampered = raw.replace(b"30005", b"30006")
    response = client.post(f"/callbacks/twilio/status?bodySHA256={digest}", data=tampered,
                           content_type="application/json", headers={"X-Twilio-Signature": sign(url, {})})
    assert response.status_code == 403


def test_unknown_provider_404_and_oversized_body_413_and_no_rate_limit():
    client = twilio_app(RATE_LIMIT_MAX_REQUESTS="1").test_client()
    assert post_callback(client, status_fields("SMx", "sent"), path="/callbacks/kaleyra/status").status_code == 404
    assert post_callback(client, status_fields("SMx", "sent"), path="/callbacks/nope/status").status_code == 404
    big = status_fields("SM" + "5" * 32, "sent", Padding="x" * 20_000)
    assert post_callback(client, big).status_code == 413
    # Callbacks are outside the /send rate limit of 1 per minute.
    for i in range(5):
        assert post_callback(client, status_fields(f"SM{i:032d}", "sent")).status_code == 200


def test_callbacks_are_off_without_public_base_url():
    app = create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                      "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "STORAGE_URI": "memory://"})
    client = app.test_client()
    _, sent = send_twilio(client, "SM" + "6" * 32)
    assert "StatusCallback" not in sent
    assert post_callback(client, status_fields("SM" + "6" * 32, "sent")).status_code == 404
    assert client.get(f"/messages/SM{'6' * 32}").get_json()["status"] == "queued"


def test_log_line_and_metric_per_callback(caplog):
    client = twilio_app().test_client()
    sid = "SM" + "7" * 32
    payload = message()
    send_twilio(client, sid, payload)
    before = _metric("twilio", "delivered", "US")
    with caplog.at_level(logging.INFO):
        post_callback(client, status_fields(sid, "delivered", To=payload["receiver"]))
        post_callback(client, status_fields(sid, "failed", To=payload["receiver"]))  # sticky: no change
    assert _metric("twilio", "delivered", "US") == before + 1
    lines = [r for r in caplog.records if r.getMessage() == "delivery status"]
    assert [(r.old_status, r.new_status) for r in lines] == [("queued", "delivered"), ("delivered", "delivered")]
    assert all(r.sid == sid and r.receiver == f"+1***{payload['receiver'][-2:]}" for r in lines)
    text = " ".join(str(vars(r)) for r in caplog.records)
    assert payload["receiver"] not in text and payload["body"] not in text


def _metric(provider: str, status: str, country: str) -> float:
    value = REGISTRY.get_sample_value("sms_delivery_status_total",
                                      {"provider": provider, "status": status, "country": country})
    return value or 0.0


def test_record_never_holds_the_body_or_the_number(storage_uri):
    client = twilio_app(storage_uri).test_client()
    sid = "SM" + "8" * 32
    payload = message(body="secret code 424242")
    send_twilio(client, sid, payload)
    post_callback(client, status_fields(sid, "delivered", To=payload["receiver"]))
    text = client.get(f"/messages/{sid}").get_data(as_text=True)
    assert payload["receiver"] not in text and "424242" not in text
    if storage_uri.startswith("redis"):
        stored = b"".join(stored_bytes(storage_uri, "sms-service:{msg:*"))
        assert sid.encode() in stored  # the record was read, under its real key
        assert payload["receiver"].encode() not in stored and b"424242" not in stored


def test_a_record_that_cannot_be_stored_never_fails_the_send(caplog):
    app = twilio_app()
    storage = app.extensions["sms_service"].storage

    def broken(*args):
        raise redis.ConnectionError("down")

    storage.message_create = broken
    with caplog.at_level(logging.ERROR):
        send_twilio(app.test_client(), "SM" + "9" * 32)
    assert any("could not store the message record" in r.getMessage() for r in caplog.records)


# -- GET /messages/{sid} with API keys ---------------------------------------------------------


def test_each_caller_reads_only_its_own_messages():
    app = twilio_app(API_KEYS=f"{KEY_A},{KEY_B}")
    client = app.test_client()
    sid = "SM" + "a" * 32
    send_twilio(client, sid, headers={"Authorization": f"Bearer {KEY_A}"})
    assert client.get(f"/messages/{sid}").status_code == 401
    assert client.get(f"/messages/{sid}", headers={"Authorization": f"Bearer {KEY_B}"}).status_code == 404
    assert client.get(f"/messages/{sid}", headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 200
    # Scoped by the key's identity, not its place in API_KEYS: reordered, A still reads it.
    reordered = twilio_app(API_KEYS=f"{KEY_B},{KEY_A}")
    reordered.extensions["sms_service"].storage = app.extensions["sms_service"].storage
    reordered.extensions["sms_service"].status.storage = app.extensions["sms_service"].storage
    other = reordered.test_client()
    assert other.get(f"/messages/{sid}", headers={"Authorization": f"Bearer {KEY_A}"}).status_code == 200
    assert other.get(f"/messages/{sid}", headers={"Authorization": f"Bearer {KEY_B}"}).status_code == 404


def test_unknown_and_absurd_sids_are_404():
    client = twilio_app().test_client()
    assert client.get("/messages/SMnope").status_code == 404
    assert client.get("/messages/" + "x" * 500).get_json()["statusCode"] == "404"


# -- kaleyra and console ------------------------------------------------------------------


def kaleyra_app(**extra):
    return create_app({"SERVICE_PROVIDER": "kaleyra", "KALEYRA_SID": KALEYRA_SID, "KALEYRA_API_KEY": KALEYRA_KEY,
                       "STORAGE_URI": "memory://", "PUBLIC_BASE_URL": PUBLIC, "CALLBACK_SECRET": SECRET, **extra})


def test_kaleyra_callback_url_carries_a_token_checked_in_constant_time():
    client = kaleyra_app().test_client()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(KALEYRA_URL, status=202, json={"id": "kal-1", "error": {}})
        assert client.post("/send", json=message()).status_code == 200
        form = dict(pair.split("=", 1) for pair in mock.calls[0].request.body.split("&"))
    from urllib.parse import unquote_plus

    url = json.loads(unquote_plus(form["callback"]))["url"]
    token = callback_token(SECRET, "kaleyra")
    assert url == f"{PUBLIC}/callbacks/kaleyra/status?token={token}"
    path = url[len(PUBLIC):]
    for bad in ("/callbacks/kaleyra/status", f"/callbacks/kaleyra/status?token={token[:-1]}x",
                "/callbacks/kaleyra/status?token="):
        assert client.post(bad, json={"id": "kal-1", "status": "DELIVRD"}).status_code == 403
    assert client.get("/messages/kal-1").get_json()["status"] == "queued"
    assert client.post(path, json={"id": "kal-1:1", "status": "DELIVRD"}).status_code == 200
    body = client.get("/messages/kal-1").get_json()
    assert (body["status"], body["providerStatus"]) == ("delivered", "DELIVRD")


def test_console_reports_its_messages_through_the_callback_route():
    app = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://",
                      "PUBLIC_BASE_URL": "http://127.0.0.1:9", "CALLBACK_SECRET": SECRET})
    provider = app.extensions["sms_service"].provider
    assert provider.callback_url == f"http://127.0.0.1:9/callbacks/console/status?token={callback_token(SECRET, 'console')}"
    client = app.test_client()
    sid = client.post("/send", json=message()).get_json()["sid"]
    path = provider.callback_url[len("http://127.0.0.1:9"):]
    assert client.post(path, json={"sid": sid, "status": "delivered"}).status_code == 200
    assert client.get(f"/messages/{sid}").get_json()["status"] == "delivered"


# -- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "variable"), [
    ({"PUBLIC_BASE_URL": "http://sms.example.com"}, "PUBLIC_BASE_URL"),
    ({"PUBLIC_BASE_URL": "ftp://sms.example.com"}, "PUBLIC_BASE_URL"),
    ({"PUBLIC_BASE_URL": "https://sms.example.com/?a=1"}, "PUBLIC_BASE_URL"),
    ({"PUBLIC_BASE_URL": "https://sms.example.com/#x"}, "PUBLIC_BASE_URL"),
    ({"PUBLIC_BASE_URL": "https://user:pw@sms.example.com"}, "PUBLIC_BASE_URL"),
    ({"PUBLIC_BASE_URL": "https://sms_service.example.com"}, "PUBLIC_BASE_URL"),
    ({"PUBLIC_BASE_URL": "https://sms.example.com:99999"}, "PUBLIC_BASE_URL"),
    ({"PUBLIC_BASE_URL": "https://"}, "PUBLIC_BASE_URL"),
    ({"CALLBACK_SECRET": "short"}, "CALLBACK_SECRET"),
    ({"MESSAGE_TTL": "0"}, "MESSAGE_TTL"),
    ({"MESSAGE_TTL": "soon"}, "MESSAGE_TTL"),
    ({"MESSAGE_TTL": str(400 * 86_400)}, "MESSAGE_TTL"),
    ({"SERVICE_PROVIDER": "kaleyra", "KALEYRA_SID": KALEYRA_SID, "KALEYRA_API_KEY": KALEYRA_KEY,
      "PUBLIC_BASE_URL": PUBLIC}, "CALLBACK_SECRET"),
    ({"PUBLIC_BASE_URL": "http://127.0.0.1:3000"}, "CALLBACK_SECRET"),
    ({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID, "TWILIO_API_KEY_SID": "SK" + "0" * 32,
      "TWILIO_API_KEY_SECRET": "k" * 32, "PUBLIC_BASE_URL": PUBLIC}, "TWILIO_AUTH_TOKEN"),
])
def test_bad_status_configuration_stops_start_up_naming_the_variable(env, variable):
    with pytest.raises(ConfigError) as info:
        create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://", **env})
    message_text = str(info.value)
    assert message_text.startswith(variable) and "\n" not in message_text
    assert "k" * 32 not in message_text


@pytest.mark.parametrize("url", ["https://sms.example.com", "https://sms.example.com:8443/prefix/",
                                 "http://127.0.0.1:3000", "http://localhost:3000", "http://[::1]:3000"])
def test_good_public_base_urls(url):
    app = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://", "PUBLIC_BASE_URL": url,
                      "CALLBACK_SECRET": SECRET})
    assert app.extensions["sms_service"].provider.callback_url.startswith(url.rstrip("/") + "/callbacks/console/")


def test_a_plugin_without_status_support_is_given_no_callback_url():
    class Plain(Provider):
        def __init__(self, env, *, timeout):
            super().__init__(env, timeout=timeout)

        def send(self, message):
            return Receipt(sid="x", status="queued", date_event=None)

    from sms_service.config import load_settings

    settings = load_settings({"SERVICE_PROVIDER": "plain", "PUBLIC_BASE_URL": PUBLIC})
    assert Plain.supports_status() is False
    assert callback_url(settings, Plain) is None


def test_openapi_documents_both_routes_with_schemas():
    spec = twilio_app().test_client().get("/documentation/json").get_json()
    callback = spec["paths"]["/callbacks/{provider}/status"]["post"]
    assert {"200", "403", "404", "413"} <= set(callback["responses"])
    assert set(callback["requestBody"]["content"]) == {"application/x-www-form-urlencoded", "application/json"}
    read = spec["paths"]["/messages/{sid}"]["get"]
    assert read["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Message"}
    assert {"401", "404"} <= set(read["responses"])
    schema = spec["components"]["schemas"]["Message"]
    assert "history" in schema["properties"] and "owner" not in schema["properties"]


def test_storage_down_callback_is_503_so_the_provider_may_retry_and_no_send_is_counted_refused():
    app = twilio_app()
    client = app.test_client()
    storage = app.extensions["sms_service"].storage

    def broken(*args):
        raise redis.ConnectionError("down")

    storage.message_update = storage.message_get = broken
    refused = REGISTRY.get_sample_value("sms_guard_rejections_total", {"guard": "storage"}) or 0.0
    response = post_callback(client, status_fields("SM" + "b" * 32, "delivered"))
    assert response.status_code == 503 and response.get_json()["statusCode"] == "503"
    assert client.get(f"/messages/SM{'b' * 32}").status_code == 503
    assert (REGISTRY.get_sample_value("sms_guard_rejections_total", {"guard": "storage"}) or 0.0) == refused

"""Vonage through the app in process: signing chosen by configuration, GET receipts and inbound replies."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
import responses
from support.payloads import message

from sms_service.app import create_app
from sms_service.exceptions import ConfigError
from sms_service.status.callbacks import callback_token
from sms_service_vonage import signature

PUBLIC = "https://sms.example.com"
SECRET = "s3cret-callback-secret-0123456789"
SIG_SECRET = "v0nage-signature-secret-abcdef"
SEND_URL = "https://rest.nexmo.com/sms/json"
ENV = {"SERVICE_PROVIDER": "vonage", "VONAGE_API_KEY": "abcd1234", "VONAGE_API_SECRET": "Secr3tValue",
       "STORAGE_URI": "memory://", "PUBLIC_BASE_URL": PUBLIC}


def send(client, sid: str, receiver: str | None = None):
    payload = message(**({"receiver": receiver} if receiver else {}))
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(SEND_URL, json={"message-count": "1", "messages": [
            {"to": payload["receiver"][1:], "message-id": sid, "status": "0", "message-price": "0.0333"}]})
        answer = client.post("/send", json=payload)
        form = dict(pair.split("=", 1) for pair in mock.calls[0].request.body.split("&"))
    assert answer.status_code == 200, answer.get_json()
    return payload, form


def signed(fields: dict[str, str]) -> dict[str, str]:
    fields = {**fields, "timestamp": str(int(time.time()))}
    return {**fields, "sig": signature.compute(fields, SIG_SECRET, "md5hash")}


def receipt(sid: str, status: str = "delivered", err: str = "0") -> dict[str, str]:
    return {"msisdn": "15558675310", "to": "15017122661", "messageId": sid, "status": status, "err-code": err,
            "price": "0.0333", "api-key": "abcd1234", "scts": "2612010800"}


def test_with_a_signature_secret_the_url_has_no_token_and_sig_decides():
    app = create_app({**ENV, "VONAGE_SIGNATURE_SECRET": SIG_SECRET})  # no CALLBACK_SECRET needed
    client = app.test_client()
    _, form = send(client, "0A00SIGNED1")
    assert form["callback"] == urlencode({"x": f"{PUBLIC}/callbacks/vonage/status"})[2:]
    forged = {**signed(receipt("0A00SIGNED1")), "status": "failed"}
    assert client.get("/callbacks/vonage/status?" + urlencode(forged)).status_code == 403
    assert client.get("/callbacks/vonage/status?" + urlencode(receipt("0A00SIGNED1"))).status_code == 403
    assert client.get("/messages/0A00SIGNED1").get_json()["status"] == "queued"
    assert client.get("/callbacks/vonage/status?" + urlencode(signed(receipt("0A00SIGNED1")))).status_code == 200
    record = client.get("/messages/0A00SIGNED1").get_json()
    assert (record["status"], record["providerStatus"]) == ("delivered", "delivered")


def test_without_a_signature_secret_the_token_is_required_and_checked():
    with pytest.raises(ConfigError, match="CALLBACK_SECRET"):
        create_app(ENV)
    client = create_app({**ENV, "CALLBACK_SECRET": SECRET}).test_client()
    _, form = send(client, "0A00TOKEN01")
    token = callback_token(SECRET, "vonage")
    assert form["callback"] == urlencode({"x": f"{PUBLIC}/callbacks/vonage/status?token={token}"})[2:]
    fields = receipt("0A00TOKEN01", status="expired", err="5")
    assert client.get("/callbacks/vonage/status?" + urlencode(fields)).status_code == 403
    assert client.get(f"/callbacks/vonage/status?token={token}x&" + urlencode(fields)).status_code == 403
    assert client.get(f"/callbacks/vonage/status?token={token}&" + urlencode(fields)).status_code == 200
    record = client.get("/messages/0A00TOKEN01").get_json()
    assert (record["status"], record["errorCode"]) == ("undelivered", "5")


def test_get_inbound_stop_and_err_code_9_feed_the_suppression_list():
    client = create_app({**ENV, "VONAGE_SIGNATURE_SECRET": SIG_SECRET}).test_client()
    stop = signed({"msisdn": "15558670001", "to": "15017122661", "text": "Stop", "type": "text",
                   "messageId": "0B01", "api-key": "abcd1234", "nonce": "n-1"})
    assert client.get("/callbacks/vonage/inbound?" + urlencode(stop)).status_code == 200
    refused = client.post("/send", json=message(receiver="+15558670001"))
    assert refused.status_code == 403 and "opted out" in refused.get_json()["message"]
    payload, _ = send(client, "0A00OPTOUT1")
    fields = {**receipt("0A00OPTOUT1", status="rejected", err="9"), "msisdn": payload["receiver"][1:]}
    assert client.post("/callbacks/vonage/status", data=signed(fields)).status_code == 200
    assert client.post("/send", json={**payload}).status_code == 403


def test_the_openapi_document_has_the_get_routes():
    spec = create_app({**ENV, "CALLBACK_SECRET": SECRET}).test_client().get("/documentation/json").get_json()
    for path in ("/callbacks/{provider}/status", "/callbacks/{provider}/inbound"):
        assert {"get", "post"} <= spec["paths"][path].keys()

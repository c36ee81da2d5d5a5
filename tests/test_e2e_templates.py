"""End to end: an OTP template sent through real gunicorn to the fake Kaleyra, its record, webhook and logs."""

from __future__ import annotations

import sqlite3
import time

import pytest
import redis
import requests
from support.payloads import fresh_receiver
from support.service import Service, kaleyra_env
from support.webhook_receiver import SECRET, WebhookReceiver

pytestmark = pytest.mark.e2e

ADMIN_KEY = "e2e-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CALLBACK_SECRET = "e2e-callback-secret-0123456789"
DLT_ID = "1107161234567890123"
CODE = "918273"


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "redis"])
def storage_env(request):
    if request.param == "sqlite":
        return {}  # the embedded default, in the service's STATE_DIR
    return {"STORAGE_URI": request.getfixturevalue("redis_uri")}


def storage_dump(service: Service) -> str:
    """Every value the service's storage holds, as text."""
    uri = service.env.get("STORAGE_URI")
    if uri is None:
        path = service.state_dir / "sms-service.db"
        with sqlite3.connect(path) as conn:
            return "\n".join(conn.iterdump())
    client = redis.Redis.from_url(uri)
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        value = {"string": client.get, "hash": client.hgetall, "list": lambda k: client.lrange(k, 0, -1),
                 "set": client.smembers, "zset": lambda k: client.zrange(k, 0, -1)}[kind](key)
        parts.append(f"{key!r} {value!r}")
    return "\n".join(parts)


def test_an_otp_template_goes_out_with_its_dlt_id_and_its_code_is_kept_nowhere(
        storage_env, fake_provider, receiver):
    env = {**kaleyra_env(fake_provider.url), **storage_env, "ADMIN_API_KEYS": ADMIN_KEY,
           "CALLBACK_SECRET": CALLBACK_SECRET, "STATUS_WEBHOOK_URL": receiver.url,
           "STATUS_WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "debug"}
    service = Service(env, workers=2)
    service.env["PUBLIC_BASE_URL"] = service.url  # http on loopback: allowed for local runs
    with service:
        put = requests.put(f"{service.url}/templates/otp", headers=ADMIN, timeout=10, json={
            "body": "Your code is ((code))", "providerIds": {"kaleyra": {"template_id": DLT_ID}}})
        assert put.status_code == 201 and put.json()["version"] == 1
        # A second version, so the record naming version 2 says something.
        put = requests.put(f"{service.url}/templates/otp", headers=ADMIN, timeout=10, json={
            "body": "Your login code is ((code)). Do not share it.",
            "providerIds": {"kaleyra": {"template_id": DLT_ID}}})
        assert put.json()["version"] == 2
        answer = service.send({"sender": "KLRHXA", "receiver": fresh_receiver(), "template": "otp",
                               "personalisation": {"code": CODE}})
        assert answer.status_code == 200, answer.text
        sid = answer.json()["sid"]
        sent = fake_provider.messages[-1]
        assert sent["template_id"] == DLT_ID
        assert sent["body"] == f"Your login code is {CODE}. Do not share it."
        record = requests.get(f"{service.url}/messages/{sid}", timeout=10).json()
        assert record["template"] == {"name": "otp", "version": 2}
        assert CODE not in str(record)
        # The status webhook carries the template too.
        assert fake_provider.post_status(sent, "DELIVRD").status_code == 200
        assert receiver.wait_for(lambda: any(r.event["data"]["status"] == "delivered"
                                             for r in receiver.delivered), 15)
        events = [r.event["data"] for r in receiver.delivered]
        assert all(event["template"] == {"name": "otp", "version": 2} for event in events)
        time.sleep(0.3)  # let the access lines reach the log
        log = service.log_text()
        assert sid in log  # the log does tell of the send
        assert CODE not in log
        access = [r for r in service.log_records() if r.get("path") == "/send"]
        assert access[-1]["template"] == "otp" and access[-1]["template_version"] == 2
        dump = storage_dump(service)
        assert "otp" in dump and sid in dump  # the dump is of the right storage
        assert CODE not in dump

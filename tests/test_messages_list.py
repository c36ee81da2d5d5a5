"""GET /messages (SPEC section 18): scope, filters, cursor and errors, through the app, on every storage."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from sms_service.app import create_app
from sms_service.status import model

KEY_A, KEY_B = "key-alice-0123456789", "key-bob-0123456789ab"


@pytest.fixture
def app(storage_uri):
    return create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": storage_uri,
                       "API_KEYS": f"{KEY_A},{KEY_B}", "RATE_LIMIT_MAX_REQUESTS": "1000"})


@pytest.fixture
def client(app):
    return app.test_client()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _send(client, key: str, receiver: str) -> str:
    # Newest first is by the millisecond of the send (ties by sid): one send per millisecond here.
    time.sleep(0.002)
    answer = client.post("/send", json={"sender": "Acme", "receiver": receiver, "body": "hello"},
                         headers=_auth(key))
    assert answer.status_code == 200, answer.json
    return answer.json["sid"]


def _sids(client, key: str, query: str = "") -> list[str]:
    answer = client.get(f"/messages{query}", headers=_auth(key))
    assert answer.status_code == 200, answer.json
    return [message["sid"] for message in answer.json["messages"]]


def test_a_caller_lists_its_own_messages_newest_first_and_never_another_keys(client):
    alice = [_send(client, KEY_A, f"+1415555{i:04d}") for i in range(3)]
    bob = [_send(client, KEY_B, f"+1415556{i:04d}") for i in range(2)]
    assert _sids(client, KEY_A) == alice[::-1]
    assert _sids(client, KEY_B) == bob[::-1]
    answer = client.get("/messages", headers=_auth(KEY_A)).json
    assert answer["next"] is None
    message = answer["messages"][0]
    # The public fields only: never the owner, the receiver hash or the full number.
    assert "owner" not in message and "receiverHash" not in message
    assert message["receiver"] == "+1***02" and message["status"] == "queued"
    assert client.get("/messages").status_code == 401


def test_the_receiver_filter_takes_a_full_number_and_finds_only_its_messages(client):
    to_one = _send(client, KEY_A, "+14155550100")
    _send(client, KEY_A, "+14155550101")
    time.sleep(1.05)  # the exponential delay of one receiver
    to_bob = _send(client, KEY_B, "+14155550100")  # the same number, another caller: not Alice's
    assert _sids(client, KEY_A, "?receiver=%2B14155550100") == [to_one]
    assert _sids(client, KEY_B, "?receiver=%2B14155550100") == [to_bob]
    assert _sids(client, KEY_A, "?receiver=%2B14155550199") == []


def test_status_provider_and_time_filters(client, app):
    first = _send(client, KEY_A, "+14155550100")
    second = _send(client, KEY_A, "+14155550101")
    status = app.extensions["sms_service"].status
    status.storage.message_update(f"console:{first}", model.entry("delivered", "DELIVRD", None, model.timestamp()),
                                  {"sid": first}, 60_000)
    assert _sids(client, KEY_A, "?status=delivered") == [first]
    assert _sids(client, KEY_A, "?status=queued") == [second]
    assert _sids(client, KEY_A, "?provider=console") == [second, first]
    assert _sids(client, KEY_A, "?provider=twilio") == []
    assert _sids(client, KEY_A, "?template=otp") == []  # no record here came from a template
    now = dt.datetime.now(dt.UTC)
    past = (now - dt.timedelta(hours=1)).isoformat()
    future = (now + dt.timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert _sids(client, KEY_A, f"?since={past.replace('+', '%2B')}") == [second, first]
    assert _sids(client, KEY_A, f"?until={past.replace('+', '%2B')}") == []
    assert _sids(client, KEY_A, f"?since={future}") == []


def test_the_cursor_walks_every_page(client):
    sent = [_send(client, KEY_A, f"+1415555{i:04d}") for i in range(7)]
    seen, cursor, pages = [], None, 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        answer = client.get(f"/messages{query}", headers=_auth(KEY_A)).json
        seen += [message["sid"] for message in answer["messages"]]
        pages += 1
        cursor = answer["next"]
        if cursor is None:
            break
    assert pages == 3 and seen == sent[::-1]


@pytest.mark.parametrize(("query", "named"), [
    ("?status=arrived", "status"), ("?limit=0", "limit"), ("?limit=101", "limit"), ("?limit=x", "limit"),
    ("?since=yesterday", "since"), ("?until=2021-13-01T00:00:00Z", "until"),
    ("?receiver=4155550100", "receiver"), ("?cursor=nope", "cursor"),
    ("?since=2021-01-02T00:00:00Z&until=2021-01-01T00:00:00Z", "until"),
])
def test_bad_filters_are_a_400_that_names_them(client, query, named):
    answer = client.get(f"/messages{query}", headers=_auth(KEY_A))
    assert answer.status_code == 400
    assert answer.json["statusCode"] == "400" and answer.json["error"] == "Bad Request"
    assert named in answer.json["message"]


def test_the_openapi_document_describes_the_listing(client):
    document = client.get("/documentation/json").json
    operation = document["paths"]["/messages"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"status", "provider", "template", "since", "until", "receiver", "limit", "cursor"} <= names
    assert {"200", "400", "401"} <= set(operation["responses"])

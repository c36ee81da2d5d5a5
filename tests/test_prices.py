"""Prices on records (SPEC section 18): from the send answer, a callback or a lookup, and
`sms_spend_total` added once per message, whichever report brings the price, on every storage."""

from __future__ import annotations

import pytest
import responses
from prometheus_client import REGISTRY
from support.payloads import message
from test_status import TWILIO_URL, post_callback, status_fields, twilio_app

from sms_service.status import model
from sms_service.storage import open_storage

TTL_MS = 60_000


def _spend(country: str = "US", currency: str = "USD", provider: str = "twilio") -> float:
    value = REGISTRY.get_sample_value("sms_spend_total",
                                      {"provider": provider, "country": country, "currency": currency})
    return value or 0.0


@pytest.fixture
def storage(storage_uri):
    store = open_storage(storage_uri)
    yield store
    store.close()


def _stored(storage, sid: str) -> str:
    stamp = model.timestamp()
    record = {"sid": sid, "provider": "twilio", "receiver": "+1***10", "country": "US", "numSegments": "1",
              "encoding": "GSM-7", "dateEvent": stamp, "status": "queued", "providerStatus": "queued",
              "errorCode": None, "updatedAt": stamp, "owner": "", "history": [model.entry("queued", "queued",
                                                                                          None, stamp)]}
    storage.message_create(f"twilio:{sid}", record, TTL_MS)
    return f"twilio:{sid}"


# -- the storage decides once --------------------------------------------------------


def test_message_price_is_given_once(storage):
    key = _stored(storage, "P1")
    first = storage.message_price(key, "0.0075", "USD")
    assert first is not None and (first["price"], first["priceUnit"], first["sid"]) == ("0.0075", "USD", "P1")
    assert storage.message_price(key, "0.0075", "USD") is None  # the same price again: not counted again
    assert storage.message_price(key, "0.0090", "USD") is None  # a first price stays
    assert (storage.message_get(key)["price"], storage.message_get(key)["priceUnit"]) == ("0.0075", "USD")
    assert storage.message_price("twilio:nothing", "0.0075", "USD") is None


def test_message_price_leaves_orphans_and_status_alone(storage):
    storage.message_update("twilio:O1", model.entry("delivered", "delivered", None, model.timestamp()),
                           {"sid": "O1", "provider": "twilio", "receiver": None, "country": None}, TTL_MS)
    assert storage.message_price("twilio:O1", "0.0075", "USD") is None
    key = _stored(storage, "P2")
    storage.message_update(key, model.entry("sent", "sent", None, model.timestamp()), {"sid": "P2"}, TTL_MS)
    priced = storage.message_price(key, "0.01", "EUR")
    assert priced["status"] == "sent" and [h["status"] for h in priced["history"]] == ["queued", "sent"]


def test_the_same_price_from_two_workers_at_once_counts_once(shared_storage_uri):
    from concurrent.futures import ThreadPoolExecutor

    stores = [open_storage(shared_storage_uri) for _ in range(4)]
    try:
        key = _stored(stores[0], "P3")
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: stores[i % 4].message_price(key, "0.0075", "USD"), range(32)))
        assert sum(result is not None for result in results) == 1
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize(("price", "unit", "expected"), [
    ("-0.00750", "USD", ("0.00750", "USD")), ("0.0079", "usd", ("0.0079", "USD")), ("12", "EUR", ("12", "EUR")),
    (None, "USD", None), ("-0.0075", None, None), ("free", "USD", None), ("0.1", "dollars", None),
    ("1e-3", "USD", None), ("", "USD", None),
])
def test_clean_price(price, unit, expected):
    assert model.clean_price(price, unit) == expected


# -- through the service: each source, counted once ------------------------------------


def _send(client, sid: str, **answer) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(TWILIO_URL, status=201, json={"sid": sid, "status": "queued", "num_segments": "1",
                                                "date_created": "Thu, 26 Nov 2026 08:00:00 +0000", **answer})
        assert client.post("/send", json=message()).status_code == 200


def test_a_price_in_the_send_answer(storage_uri):
    client = twilio_app(storage_uri).test_client()
    before = _spend()
    _send(client, "SM" + "a1" * 16, price="-0.00790", price_unit="USD")
    record = client.get("/messages/SM" + "a1" * 16).get_json()
    assert (record["price"], record["priceUnit"]) == ("0.00790", "USD")
    assert _spend() == pytest.approx(before + 0.0079)
    # A callback later bringing the same price adds nothing.
    post_callback(client, status_fields("SM" + "a1" * 16, "delivered", Price="-0.00790", PriceUnit="USD"))
    assert _spend() == pytest.approx(before + 0.0079)


def test_a_price_from_a_callback_twice_is_counted_once(storage_uri):
    client = twilio_app(storage_uri).test_client()
    sid = "SM" + "b2" * 16
    _send(client, sid)  # Twilio answers "price": null at first
    assert client.get(f"/messages/{sid}").get_json()["price"] is None
    before = _spend()
    for status in ("sent", "delivered", "delivered"):
        fields = status_fields(sid, status, Price="-0.0075", PriceUnit="USD")
        assert post_callback(client, fields).status_code == 200
    record = client.get(f"/messages/{sid}").get_json()
    assert (record["status"], record["price"], record["priceUnit"]) == ("delivered", "0.0075", "USD")
    assert _spend() == pytest.approx(before + 0.0075)


def test_a_callback_without_a_price_leaves_none(storage_uri):
    client = twilio_app(storage_uri).test_client()
    sid = "SM" + "c3" * 16
    _send(client, sid)
    before = _spend()
    post_callback(client, status_fields(sid, "delivered"))
    assert client.get(f"/messages/{sid}").get_json()["price"] is None
    assert _spend() == before

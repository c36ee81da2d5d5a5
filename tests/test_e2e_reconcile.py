"""End to end: the reconciler (SPEC section 18) under real gunicorn, against the fake Twilio's lookups.

Callbacks are "dropped" by not asking for them (no PUBLIC_BASE_URL), so only a lookup can
tell the service what became of a message.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
import requests
from support.payloads import message
from support.service import Service, twilio_env
from support.webhook_receiver import SECRET, WebhookReceiver

pytestmark = pytest.mark.e2e


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


def _send(service: Service, receiver_number: str | None = None) -> str:
    payload = message() if receiver_number is None else {**message(), "receiver": receiver_number}
    answer = service.send(payload)
    assert answer.status_code == 200, answer.text
    return answer.json()["sid"]


def _metric(service: Service, name: str, **labels: str) -> float:
    text = requests.get(f"{service.url}/-/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_a_message_whose_callbacks_were_dropped_becomes_delivered_through_a_lookup(fake_provider, receiver):
    env = {**twilio_env(fake_provider.url), "RECONCILE_AFTER": "1s", "STATUS_WEBHOOK_URL": receiver.url,
           "STATUS_WEBHOOK_SECRET": SECRET}
    with Service(env, workers=2) as service:
        sid = _send(service)
        assert requests.get(f"{service.url}/messages/{sid}", timeout=10).json()["status"] == "queued"
        assert receiver.wait_for(lambda: any(r.event["data"]["sid"] == sid for r in receiver.delivered), 30), \
            service.log_text()[-3000:]
        record = requests.get(f"{service.url}/messages/{sid}", timeout=10).json()
        assert (record["status"], record["providerStatus"]) == ("delivered", "delivered")
        assert record["history"][-1]["source"] == "lookup"
        assert (record["price"], record["priceUnit"]) == ("0.00750", "USD")  # Twilio's "-0.00750"
        time.sleep(3)  # a second lookup or a second event would have come by now
        events = [r.event for r in receiver.delivered if r.event["data"]["sid"] == sid]
        assert [event["data"]["status"] for event in events] == ["delivered"]
        assert receiver.unverified() == []
        assert [looked for _, looked in fake_provider.lookups] == [sid]
        assert _metric(service, "sms_status_lookups_total", provider="twilio", outcome="changed") == 1
        assert _metric(service, "sms_spend_total", provider="twilio", country="US", currency="USD") == 0.0075


def test_unknown_after_message_final_after_then_a_late_report_replaces_it(fake_provider, receiver):
    env = {**twilio_env(fake_provider.url), "RECONCILE_AFTER": "off", "MESSAGE_FINAL_AFTER": "2s",
           "STATUS_WEBHOOK_URL": receiver.url, "STATUS_WEBHOOK_SECRET": SECRET}
    service = Service(env, workers=1)
    service.env["PUBLIC_BASE_URL"] = service.url  # the provider may report, late
    with service:
        sid = _send(service)
        assert receiver.wait_for(lambda: any(r.event["data"]["status"] == "unknown" for r in receiver.delivered),
                                 30), service.log_text()[-3000:]
        record = requests.get(f"{service.url}/messages/{sid}", timeout=10).json()
        assert record["status"] == "unknown" and record["history"][-1]["source"] == "final_after"
        assert fake_provider.lookups == []  # RECONCILE_AFTER=off: no lookup, only the end
        assert _metric(service, "sms_messages_unknown_total", provider="twilio") == 1
        # The real final report, late: it still replaces unknown, with its own event.
        sent = fake_provider.messages[-1]
        assert fake_provider.post_status(sent, "delivered").status_code == 200
        assert fake_provider.post_status(sent, "sent").status_code == 200  # older: sticky
        assert receiver.wait_for(lambda: len([r for r in receiver.delivered if r.event["data"]["sid"] == sid]) >= 2,
                                 30)
        record = requests.get(f"{service.url}/messages/{sid}", timeout=10).json()
        assert record["status"] == "delivered"
        time.sleep(1.5)
        statuses = [r.event["data"]["status"] for r in receiver.delivered if r.event["data"]["sid"] == sid]
        assert statuses == ["unknown", "delivered"]


def _lease_holder(service: Service) -> list[int]:
    return [int(m) for m in re.findall(r'"message": "reconciler lease taken".*?"pid": (\d+)', service.log_text())]


def test_the_lookup_rate_holds_across_two_instances_and_the_lease_moves_when_its_holder_dies(
        fake_provider, redis_uri):
    env = {**twilio_env(fake_provider.url), "STORAGE_URI": redis_uri, "RECONCILE_AFTER": "1s",
           "RECONCILE_RATE": "2", "RATE_LIMIT_MAX_REQUESTS": "10000"}
    fake_provider.lookup_status = "sent"  # never final: every record is looked up again at its slots
    first, second = Service(env, workers=2), Service(env, workers=2)
    with first, second:
        sids = [_send(first if i % 2 else second, f"+1415555{i:04d}") for i in range(16)]
        # 16 first lookups at 2 a second take 7.5 s at least.
        assert _wait(lambda: len(fake_provider.lookups) >= 8, 30), first.log_text()[-2000:]
        holders = [(service, pid) for service in (first, second) for pid in _lease_holder(service)]
        assert len(holders) == 1, holders  # one runner in the whole deployment
        holder, _ = holders[0]
        other = second if holder is first else first
        # Kill the holder's whole instance (its workers first: a master would boot new ones).
        for worker in holder.worker_pids():
            try:
                os.kill(worker, signal.SIGKILL)
            except ProcessLookupError:
                pass
        holder.process.send_signal(signal.SIGKILL)
        holder.process.wait()
        killed_at = time.monotonic()
        assert _wait(lambda: _lease_holder(other), 60), other.log_text()[-2000:]
        taken_over_in = time.monotonic() - killed_at
        assert taken_over_in < 60
        assert _wait(lambda: {sid for _, sid in fake_provider.lookups} >= set(sids), 60)
    times = sorted(at for at, _ in fake_provider.lookups)
    assert len(times) >= 16
    # Never more than 2 in any second (the window is kept by Redis's clock, these times are the
    # fake's arrivals: a lookup may arrive up to a network hop late, never early by more).
    for earlier, later in zip(times, times[2:], strict=False):
        assert later - earlier >= 0.95, (later - earlier, times)

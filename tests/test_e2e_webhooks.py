"""End to end: status webhooks through real gunicorn, to a real local receiver that verifies them.

The console provider reports each message `sent` then `delivered` to the service's own
callback route, so every send makes two status changes, hence two events.
"""

from __future__ import annotations

import os
import signal
import statistics
import time

import pytest
import requests
from support.payloads import message
from support.service import Service, twilio_env
from support.webhook_receiver import SECRET, WebhookReceiver

pytestmark = pytest.mark.e2e

CALLBACK_SECRET = "e2e-callback-secret-0123456789"


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


def webhook_service(receiver: WebhookReceiver, workers: int = 2, **env: str) -> Service:
    service = Service({"SERVICE_PROVIDER": "console", "CALLBACK_SECRET": CALLBACK_SECRET,
                       "RATE_LIMIT_MAX_REQUESTS": "10000",
                       "STATUS_WEBHOOK_URL": receiver.url, "STATUS_WEBHOOK_SECRET": SECRET, **env},
                      workers=workers)
    service.env["PUBLIC_BASE_URL"] = service.url  # http on loopback: allowed for local runs
    return service


def send(service: Service) -> str:
    answer = service.send(message())
    assert answer.status_code == 200, answer.text
    return answer.json()["sid"]


def expected(sids: list[str]) -> list[tuple[str, str]]:
    return sorted((sid, status) for sid in sids for status in ("sent", "delivered"))


def delivered_events(receiver: WebhookReceiver) -> list[tuple[str, str]]:
    return sorted((r.event["data"]["sid"], r.event["data"]["status"]) for r in receiver.delivered)


def wait_for_events(receiver: WebhookReceiver, sids: list[str], timeout: float) -> bool:
    return receiver.wait_for(lambda: set(delivered_events(receiver)) >= set(expected(sids)), timeout)


def test_every_status_change_arrives_once_signed_and_the_metrics_say_so(receiver):
    with webhook_service(receiver) as service:
        sids = [send(service) for _ in range(5)]
        assert wait_for_events(receiver, sids, 15)
        time.sleep(1.5)  # any duplicate would have come by now
        assert delivered_events(receiver) == expected(sids)
        assert receiver.ids_once() and receiver.unverified() == []
        assert len(receiver.attempts) == 10  # the normal case: each event sent once
        for got in receiver.delivered:
            data = got.event["data"]
            assert got.event["type"] == "message.status"
            assert data["receiver"].startswith("+1***") and data["webhookFailures"] == []
            assert "owner" not in data
        record = requests.get(f"{service.url}/messages/{sids[0]}", timeout=10).json()
        assert record["status"] == "delivered" and record["webhookFailures"] == []
        text = requests.get(f"{service.url}/-/metrics", timeout=10).text
        assert 'sms_webhook_attempts_total{result="delivered"} 10.0' in text
        assert "sms_webhook_backlog 0.0" in text
        checkup = requests.get(f"{service.url}/-/check-up", timeout=10).json()
        assert checkup["status"] == "OK"
        assert checkup["statusWebhooks"] == {"backlog": 0, "oldestPendingSeconds": None}


def test_a_receiver_that_fails_then_recovers_gets_every_event_with_stable_ids(receiver):
    receiver.set_mode("error500")
    with webhook_service(receiver) as service:
        sids = [send(service) for _ in range(3)]
        # Every event failed once at least (and some twice: a retry after 1 s).
        assert receiver.wait_for(lambda: len({r.webhook_id for r in receiver.attempts}) == 6, 15)
        failed_ids = {r.webhook_id for r in receiver.attempts}
        checkup = requests.get(f"{service.url}/-/check-up", timeout=10).json()
        assert checkup["statusWebhooks"]["backlog"] == 6 and checkup["statusWebhooks"]["oldestPendingSeconds"] > 0
        receiver.set_mode("ok")
        assert wait_for_events(receiver, sids, 20)
        time.sleep(1.5)
        assert delivered_events(receiver) == expected(sids)
        assert receiver.ids_once()
        # The repeats carry the ids the failed attempts had: a receiver can de-duplicate.
        assert set(receiver.delivered_ids()) == failed_ids
        for webhook_id in failed_ids:
            bodies = {r.body for r in receiver.attempts if r.webhook_id == webhook_id}
            assert len(bodies) == 1  # the same event each time
        text = requests.get(f"{service.url}/-/metrics", timeout=10).text
        assert 'sms_webhook_attempts_total{result="http_error"}' in text
        assert 'sms_webhook_attempts_total{result="delivered"} 6.0' in text


def test_a_worker_killed_mid_attempt_loses_no_event(receiver):
    receiver.set_mode("hang")
    receiver.hang_s = 60
    with webhook_service(receiver, workers=1) as service:
        sids = [send(service) for _ in range(2)]
        assert receiver.wait_for(lambda: receiver.hanging == 4, 10)  # both events of both sends, in flight
        (worker,) = service.worker_pids()
        os.kill(worker, signal.SIGKILL)
        receiver.set_mode("ok")
        # gunicorn boots another worker; the dead one's leases run out and it takes them.
        assert receiver.wait_for(lambda: len(service.worker_pids()) == 2, 20)
        assert wait_for_events(receiver, sids, 40)
        time.sleep(1.5)
        assert delivered_events(receiver) == expected(sids) and receiver.ids_once()


def test_a_restart_with_events_pending_loses_none(receiver, tmp_path):
    receiver.set_mode("error500")
    state = {"STATE_DIR": str(tmp_path / "state")}
    first = webhook_service(receiver, **state)
    with first:
        sids = [send(first) for _ in range(2)]
        assert receiver.wait_for(lambda: len({r.webhook_id for r in receiver.attempts}) == 4, 15)
        started = time.monotonic()
    assert first.process.returncode == 0
    assert time.monotonic() - started < 15  # SIGTERM is not held up by the pending events
    assert delivered_events(receiver) == []
    receiver.set_mode("ok")
    second = webhook_service(receiver, **state)
    with second:
        # The events wait in the SQLite file; the new workers deliver them.
        assert wait_for_events(receiver, sids, 20)
        time.sleep(1.5)
    assert delivered_events(receiver) == expected(sids) and receiver.ids_once()


def test_two_instances_on_one_redis_deliver_each_event_exactly_once(receiver, redis_uri):
    first = webhook_service(receiver, STORAGE_URI=redis_uri)
    second = webhook_service(receiver, STORAGE_URI=redis_uri)
    with first, second:
        sids = [send(service) for _ in range(6) for service in (first, second)]
        assert wait_for_events(receiver, sids, 20)
        time.sleep(2.5)  # every deliverer of both instances has polled twice since
        assert delivered_events(receiver) == expected(sids)
        assert receiver.ids_once()
        assert len(receiver.attempts) == 24  # each event once: no other worker sent it again
        for service in (first, second):
            assert requests.get(f"{service.url}/-/check-up", timeout=10).json()["statusWebhooks"]["backlog"] == 0


def test_a_hanging_receiver_leaves_send_and_callbacks_as_fast_as_before(receiver):
    """/send latency with a receiver that never answers, against the same with a healthy one.

    The bound is generous (a shared machine is noisy); what it rules out is a send or a
    callback waiting on a webhook attempt, which would cost 5 s, the attempt's deadline.
    """
    receiver.hang_s = 60
    with webhook_service(receiver) as service:

        def latencies() -> tuple[list[float], list[str]]:
            spent, sids = [], []
            for _ in range(15):
                started = time.monotonic()
                sids.append(send(service))
                spent.append(time.monotonic() - started)
            return spent, sids

        healthy, healthy_sids = latencies()
        assert wait_for_events(receiver, healthy_sids, 15)
        receiver.set_mode("hang")
        hanging, hanging_sids = latencies()
        assert receiver.wait_for(lambda: receiver.hanging >= 8, 10)  # the deliverers' threads are all stuck
        more, more_sids = latencies()
        hanging += more
        assert statistics.median(hanging) < statistics.median(healthy) + 0.25, (healthy, hanging)
        assert max(hanging) < 2.5, hanging
        # The provider's callbacks were answered too: every record reached "delivered".
        deadline = time.monotonic() + 10
        pending = set(hanging_sids + more_sids)
        while pending and time.monotonic() < deadline:
            pending = {sid for sid in pending if requests.get(
                f"{service.url}/messages/{sid}", timeout=10).json()["status"] != "delivered"}
            time.sleep(0.1)
        assert pending == set()
        receiver.set_mode("ok")


def test_a_report_that_beats_the_sends_answer_still_makes_one_event(receiver, fake_provider):
    service = Service({**twilio_env(fake_provider.url), "STATUS_WEBHOOK_URL": receiver.url,
                       "STATUS_WEBHOOK_SECRET": SECRET}, workers=1)
    service.env["PUBLIC_BASE_URL"] = service.url
    with service:
        fake_provider.callback_first = "delivered"
        sid = send(service)
        assert fake_provider.early_answers == [200]  # kept as an orphan, merged by the send
        assert receiver.wait_for(lambda: len(receiver.delivered) == 1, 10)
        time.sleep(1.5)
        assert delivered_events(receiver) == [(sid, "delivered")]
        assert [h["status"] for h in receiver.delivered[0].event["data"]["history"]] == ["queued", "delivered"]


def test_sigterm_with_attempts_in_flight_waits_for_their_deadline_and_keeps_the_events(receiver, tmp_path):
    receiver.set_mode("hang")
    receiver.hang_s = 60
    state = {"STATE_DIR": str(tmp_path / "state")}
    first = webhook_service(receiver, workers=1, **state)
    with first:
        sid = send(first)
        assert receiver.wait_for(lambda: receiver.hanging == 2, 10)
        started = time.monotonic()
    stopped_in = time.monotonic() - started
    assert first.process.returncode == 0
    # The attempts end at their 5 s deadline (as timeouts), not at gunicorn's 30 s kill.
    assert stopped_in < 20, stopped_in
    records = first.log_records()
    assert [r["result"] for r in records if r.get("message") == "status webhook attempt failed; will retry"] \
        == ["timeout", "timeout"]
    receiver.set_mode("ok")
    with webhook_service(receiver, workers=1, **state):
        assert wait_for_events(receiver, [sid], 15)  # at once: the stopping worker gave their leases back
        time.sleep(1.5)
    assert delivered_events(receiver) == expected([sid]) and receiver.ids_once()

"""Status webhooks (SPEC section 11) in one process: config, schedule, signing, one attempt, the deliverer."""

from __future__ import annotations

import base64
import json
import logging
import time

import pytest
from standardwebhooks import Webhook
from support.webhook_receiver import SECRET, WebhookReceiver

from sms_service import metrics
from sms_service.app import create_app
from sms_service.config import load_settings
from sms_service.exceptions import ConfigError
from sms_service.provider import StatusUpdate
from sms_service.status import model
from sms_service.status.deliverer import Deliverer
from sms_service.status.service import PUBLIC_FIELDS
from sms_service.status.webhooks import (
    RETRY_SCHEDULE_S,
    WebhookClient,
    event_body,
    retry_delay_ms,
)
from sms_service.storage import open_storage

KEY_24 = "whsec_" + base64.b64encode(bytes(range(24))).decode()


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


def settings_with(**env):
    return load_settings({"SERVICE_PROVIDER": "console", **env})


# -- configuration -----------------------------------------------------------------------


def test_webhooks_are_off_by_default():
    settings = settings_with()
    assert settings.status_webhook_url is None and settings.status_webhook_secret is None


@pytest.mark.parametrize("url", [
    "https://hooks.example.com/sms", "https://hooks.example.com:8443/a/b?tenant=7",
    "http://127.0.0.1:9000/hook", "http://localhost/hook", "http://[::1]:8080/hook",
])
def test_webhook_urls_taken(url):
    settings = settings_with(STATUS_WEBHOOK_URL=url, STATUS_WEBHOOK_SECRET=KEY_24)
    assert settings.status_webhook_url == url
    assert settings.status_webhook_retry_for_ms == 24 * 3_600_000


@pytest.mark.parametrize(("url", "says"), [
    ("http://hooks.example.com/sms", "https://"),
    ("ftp://hooks.example.com/sms", "https://"),
    ("hooks.example.com/sms", "https://"),
    ("https://user:pw@hooks.example.com/", "no credentials"),
    ("https://hooks.example.com/#frag", "no credentials or fragment"),
    ("https://hooks.example.com:port/", "port"),
    ("https://hooks.exa mple.com/", "no spaces"),
    ("https://hooks.exämple.com/", "ASCII"),
    ("https://", "scheme://host"),
])
def test_bad_webhook_urls_name_the_variable(url, says):
    with pytest.raises(ConfigError) as error:
        settings_with(STATUS_WEBHOOK_URL=url, STATUS_WEBHOOK_SECRET=KEY_24)
    assert error.value.message.startswith("STATUS_WEBHOOK_URL")
    assert says in error.value.message


@pytest.mark.parametrize(("secret", "says"), [
    ("", "is required"),
    ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must start with whsec_"),
    ("whsec_" + "!" * 32, "base64"),
    ("whsec_MfKQ9r8GKYqrTwjU PD8ILPZIo2LaLaSw", "base64"),
    ("whsec_c2hvcnQ=", "at least 24"),
    ("whsec_", "followed by base64"),
])
def test_bad_webhook_secrets_name_the_variable_never_the_value(secret, says):
    with pytest.raises(ConfigError) as error:
        settings_with(STATUS_WEBHOOK_URL="https://hooks.example.com/", STATUS_WEBHOOK_SECRET=secret)
    assert error.value.message.startswith("STATUS_WEBHOOK_SECRET")
    assert says in error.value.message
    if len(secret) > 8:
        assert secret[6:] not in error.value.message


def test_a_secret_without_a_url_is_a_mistake():
    with pytest.raises(ConfigError, match="STATUS_WEBHOOK_SECRET is set but STATUS_WEBHOOK_URL is not"):
        settings_with(STATUS_WEBHOOK_SECRET=KEY_24)


def test_the_secret_is_never_in_the_settings_repr():
    settings = settings_with(STATUS_WEBHOOK_URL="https://hooks.example.com/", STATUS_WEBHOOK_SECRET=KEY_24)
    assert KEY_24[6:] not in repr(settings) and "https://hooks.example.com/" in repr(settings)


@pytest.mark.parametrize(("text", "ms"), [
    ("24h", 86_400_000), ("1 day", 86_400_000), ("90m", 5_400_000), ("3600000", 3_600_000), ("2.5h", 9_000_000),
])
def test_retry_for_is_a_duration(text, ms):
    settings = settings_with(STATUS_WEBHOOK_URL="https://h.example.com/", STATUS_WEBHOOK_SECRET=KEY_24,
                             STATUS_WEBHOOK_RETRY_FOR=text)
    assert settings.status_webhook_retry_for_ms == ms


@pytest.mark.parametrize("text", ["soon", "-1h", "10 parsecs", "500ms", "8d", "1y"])
def test_bad_retry_for_names_the_variable(text):
    with pytest.raises(ConfigError) as error:
        settings_with(STATUS_WEBHOOK_URL="https://h.example.com/", STATUS_WEBHOOK_SECRET=KEY_24,
                      STATUS_WEBHOOK_RETRY_FOR=text)
    assert error.value.message.startswith("STATUS_WEBHOOK_RETRY_FOR")


# -- schedule ------------------------------------------------------------------------------


def test_the_schedule_is_the_specs_then_hourly():
    assert RETRY_SCHEDULE_S == (1, 5, 30, 120, 600, 1800)
    exact = [retry_delay_ms(n, rand=lambda: 0.0) for n in range(1, 10)]
    assert exact == [1_000, 5_000, 30_000, 120_000, 600_000, 1_800_000, 3_600_000, 3_600_000, 3_600_000]


def test_jitter_only_ever_brings_a_retry_earlier_and_by_a_tenth_at_most():
    for n in range(1, 10):
        scheduled = retry_delay_ms(n, rand=lambda: 0.0)
        for rand in (0.0, 0.3, 0.999):
            delay = retry_delay_ms(n, rand=lambda rand=rand: rand)
            assert scheduled * 0.9 <= delay <= scheduled


# -- the event and its signature -----------------------------------------------------------


def _record(status: str = "delivered", **extra) -> dict:
    at = "2026-11-26T08:00:00.000Z"
    return {"sid": "SM1", "provider": "twilio", "receiver": "+1***10", "country": "US", "numSegments": "1",
            "encoding": "GSM-7", "dateEvent": at, "status": status, "providerStatus": status, "errorCode": None,
            "updatedAt": at, "owner": "someone", "history": [model.entry("queued", "queued", None, at)], **extra}


def test_the_event_is_the_records_public_fields_never_its_owner():
    event = json.loads(event_body(_record()))
    assert event["type"] == "message.status"
    assert list(event["data"]) == [*PUBLIC_FIELDS, "webhookFailures"]
    assert event["data"]["status"] == "delivered" and event["data"]["webhookFailures"] == []
    assert "owner" not in event["data"] and "someone" not in json.dumps(event)


def test_signature_verifies_with_standardwebhooks_and_binds_id_time_and_body():
    client = WebhookClient("https://h.example.com/", SECRET, 1, "sms-service/test")
    body = event_body(_record())
    now = time.time()
    headers = client.headers("evt_1", body, now=now)
    assert headers["webhook-id"] == "evt_1" and headers["webhook-timestamp"] == str(int(now))
    assert headers["webhook-signature"].startswith("v1,")
    verifier = Webhook(SECRET)
    assert verifier.verify(body, headers)["data"]["sid"] == "SM1"
    from standardwebhooks.webhooks import WebhookVerificationError

    for spoiled in ({**headers, "webhook-id": "evt_2"},
                    {**headers, "webhook-timestamp": str(int(now) - 1)}):
        with pytest.raises(WebhookVerificationError):
            verifier.verify(body, spoiled)
    with pytest.raises(WebhookVerificationError):
        verifier.verify(body.replace(b"delivered", b"failed"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(KEY_24).verify(body, headers)
    assert SECRET[6:] not in repr(client)


# -- one attempt, against a real local receiver --------------------------------------------


def test_an_attempt_posts_the_signed_event(receiver):
    client = WebhookClient(receiver.url, SECRET, 2, "sms-service/test")
    attempt = client.attempt("evt_1", _record())
    assert (attempt.result, attempt.status) == ("delivered", 204)
    (got,) = receiver.delivered
    assert got.webhook_id == "evt_1" and got.event["data"]["sid"] == "SM1"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == "sms-service/test"


def test_a_redirect_is_a_failed_attempt_and_never_followed(receiver):
    receiver.set_mode("redirect")
    attempt = WebhookClient(receiver.url, SECRET, 2, "t").attempt("evt_1", _record())
    assert (attempt.result, attempt.status) == ("redirect", 302)
    assert len(receiver.attempts) == 1  # nothing went to the Location


def test_an_error_status_is_a_failed_attempt(receiver):
    receiver.set_mode("error500")
    assert WebhookClient(receiver.url, SECRET, 2, "t").attempt("evt_1", _record()).result == "http_error"


def test_a_refused_connection_is_a_connection_error():
    from support.ports import free_port

    url = f"http://127.0.0.1:{free_port()}/hook"
    assert WebhookClient(url, SECRET, 2, "t").attempt("evt_1", _record()).result == "connection_error"


def test_a_hanging_receiver_is_a_timeout_within_the_deadline(receiver):
    receiver.set_mode("hang")
    started = time.monotonic()
    attempt = WebhookClient(receiver.url, SECRET, 2, "t").attempt("evt_1", _record())
    spent = time.monotonic() - started
    receiver.set_mode("ok")
    assert attempt.result == "timeout"
    assert 4.5 <= spent < 15  # the 5 s deadline, with a generous margin for a busy machine


# -- the deliverer ---------------------------------------------------------------------------


def _store_with_event(storage, sid: str = "SM1", status: str = "sent") -> None:
    storage.message_create(sid, {**_record("queued"), "sid": sid}, 60_000)
    entry = model.entry(status, status, None, model.timestamp())
    storage.message_update(sid, entry, {"sid": sid, "provider": "twilio"}, 60_000, f"evt_{sid}")


def _deliverer(storage, url, retry_for_ms=86_400_000, **kwargs) -> Deliverer:
    return Deliverer(storage, WebhookClient(url, SECRET, 4, "t"), retry_for_ms, **kwargs)


def test_the_deliverer_delivers_and_empties_the_outbox(receiver, storage_uri):
    storage = open_storage(storage_uri)
    for i in range(5):
        _store_with_event(storage, f"SM{i}")
    deliverer = _deliverer(storage, receiver.url)
    deliverer.start()
    try:
        assert receiver.wait_for(lambda: len(receiver.delivered) == 5, 10)
        assert receiver.wait_for(lambda: storage.webhook_stats() == (0, None), 5)
    finally:
        assert deliverer.stop() is True
        storage.close()
    assert sorted(receiver.delivered_ids()) == sorted(f"evt_SM{i}" for i in range(5))
    assert receiver.unverified() == []


def test_a_failed_attempt_is_retried_a_second_later_with_the_same_id(receiver):
    storage = open_storage("memory://")
    receiver.set_mode("error500")
    _store_with_event(storage)
    deliverer = _deliverer(storage, receiver.url)
    deliverer.start()
    try:
        assert receiver.wait_for(lambda: len(receiver.attempts) == 1, 5)
        receiver.set_mode("ok")
        assert receiver.wait_for(lambda: len(receiver.delivered) == 1, 5)
    finally:
        deliverer.stop()
    first, second = receiver.attempts
    assert first.webhook_id == second.webhook_id == "evt_SM1"
    assert first.body == second.body  # the same event; only the timestamp and signature are new
    # 1 s, less at most a tenth; the poll never makes it late by more than its own tick.
    assert 0.85 <= second.at - first.at < 2.5


def test_exhausted_events_are_dropped_marked_logged_and_counted(receiver, caplog):
    storage = open_storage("memory://")
    receiver.set_mode("error500")
    _store_with_event(storage, status="delivered")
    before = metrics.WEBHOOK_EXHAUSTED.get()
    # 3 s: the 1st retry (1 s) fits, the 2nd (5 s after) would not.
    deliverer = _deliverer(storage, receiver.url, retry_for_ms=3_000)
    deliverer.start()
    try:
        with caplog.at_level(logging.INFO, logger="sms_service.status.deliverer"):
            assert receiver.wait_for(lambda: storage.webhook_stats() == (0, None), 10)
            time.sleep(0.2)
    finally:
        deliverer.stop()
    assert len(receiver.attempts) == 2
    (failure,) = storage.message_get("SM1")["webhookFailures"]
    assert failure["webhookId"] == "evt_SM1" and failure["status"] == "delivered"
    assert failure["attempts"] == 2 and failure["lastResult"] == "http_error"
    assert metrics.WEBHOOK_EXHAUSTED.get() == before + 1
    (line,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert line.sid == "SM1" and line.webhook_id == "evt_SM1"
    assert "+1" not in line.getMessage()


def test_stop_lets_an_attempt_in_flight_end_and_leaves_unclaimed_events(receiver):
    storage = open_storage("memory://")
    receiver.set_mode("hang")
    receiver.hang_s = 1.0  # answers 200 after a second, within the deadline
    _store_with_event(storage)
    deliverer = _deliverer(storage, receiver.url)
    deliverer.start()
    assert receiver.wait_for(lambda: deliverer.in_flight() == 1, 5)
    _store_with_event(storage, "SM2")  # arrives while stopping: never claimed
    started = time.monotonic()
    assert deliverer.stop() is True
    assert time.monotonic() - started < 6
    (event,) = storage.webhook_claim(10, 1000)
    assert event.id == "evt_SM2"


def test_status_changes_through_the_service_reach_the_receiver_at_once(receiver):
    app = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://",
                      "STATUS_WEBHOOK_URL": receiver.url, "STATUS_WEBHOOK_SECRET": SECRET})
    services = app.extensions["sms_service"]
    status = services.status
    # Slow polling: only the wake-up can bring the event within the test's bound.
    services.webhooks.poll_s = 30.0
    services.webhooks.start()
    try:
        answer = {"sid": "CO1", "numSegments": "1", "dateEvent": model.timestamp(), "status": "queued"}
        status.record_send(answer, "+15558675310", "GSM-7", owner="")
        time.sleep(1.2)  # past the deliverer's first poll
        started = time.monotonic()
        status.apply(StatusUpdate(sid="CO1", status="delivered", provider_status="delivered"))
        assert receiver.wait_for(lambda: len(receiver.delivered) == 1, 5)
        assert time.monotonic() - started < 3
        status.apply(StatusUpdate(sid="CO1", status="sent", provider_status="sent"))  # late: no change
        time.sleep(0.5)
    finally:
        services.webhooks.stop()
    (got,) = receiver.delivered
    assert got.event["data"]["status"] == "delivered" and got.event["data"]["receiver"] == "+1***10"
    assert "+15558675310" not in got.body.decode()
    assert status.read("CO1", None)["webhookFailures"] == []


def test_check_up_shows_the_backlog_beside_its_checks(receiver):
    app = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://",
                      "STATUS_WEBHOOK_URL": receiver.url, "STATUS_WEBHOOK_SECRET": SECRET})
    storage = app.extensions["sms_service"].storage
    body = app.test_client().get("/-/check-up").get_json()
    assert body["status"] == "OK" and body["checks"] == {"storage": "OK"}
    assert body["statusWebhooks"] == {"backlog": 0, "oldestPendingSeconds": None}
    _store_with_event(storage)
    time.sleep(0.05)
    figures = app.test_client().get("/-/check-up").get_json()["statusWebhooks"]
    assert figures["backlog"] == 1 and 0.04 <= figures["oldestPendingSeconds"] < 5
    # Off: the answer is as before.
    plain = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"})
    assert "statusWebhooks" not in plain.test_client().get("/-/check-up").get_json()


def test_memory_storage_warns_that_pending_webhooks_die_with_the_process(receiver, caplog):
    with caplog.at_level(logging.WARNING):
        create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://",
                    "STATUS_WEBHOOK_URL": receiver.url, "STATUS_WEBHOOK_SECRET": SECRET})
    assert any("status webhooks wait in process memory" in r.getMessage() for r in caplog.records)


def test_webhooks_off_add_nothing_to_a_record():
    app = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"})
    status = app.extensions["sms_service"].status
    assert app.extensions["sms_service"].webhooks is None and status.webhooks is None
    status.record_send({"sid": "CO1", "numSegments": "1", "dateEvent": model.timestamp(), "status": "queued"},
                       "+15558675310", "GSM-7", owner="")
    status.apply(StatusUpdate(sid="CO1", status="delivered", provider_status="delivered"))
    assert "webhookFailures" not in status.read("CO1", None)
    assert app.extensions["sms_service"].storage.webhook_stats() == (0, None)


def test_concurrent_attempts_do_not_wait_for_each_other(receiver):
    storage = open_storage("memory://")
    receiver.set_mode("hang")
    receiver.hang_s = 2.0
    for i in range(4):
        _store_with_event(storage, f"SM{i}")
    deliverer = _deliverer(storage, receiver.url)
    deliverer.start()
    try:
        started = time.monotonic()
        assert receiver.wait_for(lambda: len(receiver.attempts) == 4, 10)
        # Four attempts of 2 s each on four threads: together, not one after another (8 s).
        assert time.monotonic() - started < 6
    finally:
        deliverer.stop()


def test_the_deliverer_survives_a_surprise_and_a_storage_outage(receiver, caplog):
    storage = open_storage("memory://")
    _store_with_event(storage)
    real_claim = storage.webhook_claim
    failures = iter([ValueError("an unreadable row"), OSError("storage down")])

    def claim(*args):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return real_claim(*args)

    storage.webhook_claim = claim
    deliverer = _deliverer(storage, receiver.url, poll_s=0.1)
    deliverer.start()
    try:
        with caplog.at_level(logging.WARNING, logger="sms_service.status.deliverer"):
            assert receiver.wait_for(lambda: len(receiver.delivered) == 1, 5)
    finally:
        deliverer.stop()
    assert any("deliverer error (ValueError)" in r.getMessage() for r in caplog.records)


# -- review fixes ------------------------------------------------------------------------


def test_an_orphan_merged_at_the_send_is_delivered_at_once_not_at_the_poll(receiver):
    app = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://",
                      "STATUS_WEBHOOK_URL": receiver.url, "STATUS_WEBHOOK_SECRET": SECRET})
    services = app.extensions["sms_service"]
    status = services.status
    # Slow polling: only the wake-up can bring the event within the test's bound.
    services.webhooks.poll_s = 30.0
    services.webhooks.start()
    try:
        # The callback comes before the send's record: an orphan, no event yet.
        status.apply(StatusUpdate(sid="CO9", status="delivered", provider_status="delivered"))
        time.sleep(1.2)  # past the deliverer's first poll
        started = time.monotonic()
        answer = {"sid": "CO9", "numSegments": "1", "dateEvent": model.timestamp(), "status": "queued"}
        status.record_send(answer, "+15558675310", "GSM-7", owner="")
        assert receiver.wait_for(lambda: len(receiver.delivered) == 1, 5)
        assert time.monotonic() - started < 3
    finally:
        services.webhooks.stop()
    (got,) = receiver.delivered
    assert got.event["data"]["sid"] == "CO9" and got.event["data"]["status"] == "delivered"


def test_the_lease_outlasts_an_attempt_and_its_bookkeeping_with_room_to_spare():
    from sms_service.status import deliverer
    from sms_service.status.webhooks import ATTEMPT_DEADLINE_S
    from sms_service.storage import redis, sqlite

    worst_s = ATTEMPT_DEADLINE_S + max(sqlite.BUSY_TIMEOUT_S, redis.REDIS_SOCKET_TIMEOUT)
    # At least the worst case again: a claimant's attempt never overlaps another's.
    assert deliverer.LEASE_MS / 1000 >= 2 * worst_s


def test_a_retry_comes_on_time_even_when_the_deliverer_is_woken_early(receiver):
    storage = open_storage("memory://")
    receiver.set_mode("error500")
    _store_with_event(storage)
    # A slow poll: only the deliverer's own note of the retry's due time can bring it.
    deliverer = _deliverer(storage, receiver.url, poll_s=30.0)
    deliverer.start()
    try:
        assert receiver.wait_for(lambda: len(receiver.attempts) == 1, 5)
        receiver.set_mode("ok")
        # Early wakes before the retry is due (new events elsewhere, attempts ending)
        # must not make the deliverer forget it.
        for _ in range(3):
            time.sleep(0.2)
            deliverer.wake()
        assert receiver.wait_for(lambda: len(receiver.delivered) == 1, 5)
    finally:
        deliverer.stop()
    first, second = receiver.attempts
    # 1 s, less at most a tenth; late by no more than the due margin and a busy machine.
    assert 0.85 <= second.at - first.at < 1.5


def test_retries_of_several_events_each_come_when_due(receiver):
    storage = open_storage("memory://")
    receiver.set_mode("error500")
    deliverer = _deliverer(storage, receiver.url, poll_s=30.0)
    deliverer.start()
    try:
        _store_with_event(storage, "SM1")
        deliverer.wake()
        assert receiver.wait_for(lambda: len(receiver.attempts) == 1, 5)
        time.sleep(0.4)
        _store_with_event(storage, "SM2")  # its failure schedules a second, later retry
        deliverer.wake()
        assert receiver.wait_for(lambda: len(receiver.attempts) == 2, 5)
        receiver.set_mode("ok")
        assert receiver.wait_for(lambda: len(receiver.delivered) == 2, 5)
    finally:
        deliverer.stop()
    firsts = {a.webhook_id: a.at for a in receiver.attempts[:2]}
    for got in receiver.delivered:
        assert 0.85 <= got.at - firsts[got.webhook_id] < 1.5


def test_an_app_served_outside_the_packaged_settings_starts_its_deliverer_on_the_first_event(receiver, caplog):
    # create_app alone, as another WSGI server would call it: nothing runs post_worker_init.
    app = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://",
                      "STATUS_WEBHOOK_URL": receiver.url, "STATUS_WEBHOOK_SECRET": SECRET})
    services = app.extensions["sms_service"]
    status = services.status
    try:
        answer = {"sid": "CO5", "numSegments": "1", "dateEvent": model.timestamp(), "status": "queued"}
        status.record_send(answer, "+15558675310", "GSM-7", owner="")
        with caplog.at_level(logging.WARNING, logger="sms_service.status.deliverer"):
            status.apply(StatusUpdate(sid="CO5", status="sent", provider_status="sent"))
            status.apply(StatusUpdate(sid="CO5", status="delivered", provider_status="delivered"))
        assert receiver.wait_for(lambda: len(receiver.delivered) == 2, 5)
    finally:
        assert services.webhooks.stop() is True
    starts = [r for r in caplog.records if "started by this process's first event" in r.getMessage()]
    assert len(starts) == 1  # once, not per event
    assert sorted(got.event["data"]["status"] for got in receiver.delivered) == ["delivered", "sent"]


def test_starting_a_deliverer_twice_in_one_process_runs_one_thread(receiver):
    import threading

    def running():
        return {t for t in threading.enumerate() if t.name == "webhook-deliverer" and t.is_alive()}

    before = running()
    deliverer = _deliverer(open_storage("memory://"), receiver.url)
    deliverer.start()
    deliverer.start()
    deliverer.wake()
    try:
        assert running() - before == {deliverer._thread}
    finally:
        deliverer.stop()

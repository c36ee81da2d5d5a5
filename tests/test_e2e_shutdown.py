"""End to end: shutdown waits for the longest send a worker can be in, and SIGINT never hangs a worker."""

import signal
import threading
import time

import pytest
import requests
from support.payloads import message
from support.service import SERVE_COMMAND, Service, twilio_env
from support.webhook_receiver import SECRET, WebhookReceiver

pytestmark = pytest.mark.e2e

ADMIN_KEY = "admin-key-" + "a" * 22
# Set to check that the test fails with gunicorn's old limit: {"GUNICORN_CMD_ARGS": "--graceful-timeout 30"}.
OLD_LIMIT: dict[str, str] = {}


def test_sigterm_during_a_slow_balance_check_and_a_slow_send_lets_the_send_finish(fake_provider_server,
                                                                                   fake_provider, tmp_path):
    # Each call within PROVIDER_TIMEOUT, both together past gunicorn's old 30 s.
    env = {**twilio_env(fake_provider_server.url), "PROVIDER_TIMEOUT": "20", "TWILIO_EMPTY_BALANCE_CHECK": "true",
           "STATE_DIR": str(tmp_path / "state"), **OLD_LIMIT}
    fake_provider.balance_delay = 16
    fake_provider.mode, fake_provider.slow_seconds = "slow", 16
    answers = []
    service = Service(env, workers=1)
    with service:
        sender = threading.Thread(target=lambda: answers.append(service.send(message(), timeout=90)))
        sender.start()
        assert wait_for(lambda: fake_provider.balance_calls == 1, 10)
        started = time.monotonic()
        assert service.stop(timeout=90) == 0
        stopped_after = time.monotonic() - started
        sender.join(10)
    (answer,) = answers
    assert answer.status_code == 200, answer.text
    assert fake_provider.count() == 1
    assert stopped_after > 30  # it waited for the send, past the old limit
    assert "SIGKILL" not in service.log_text()
    sid = answer.json()["sid"]
    fake_provider.reset()
    with Service(env, workers=1) as again:  # the record was stored before the worker left
        record = requests.get(f"{again.url}/messages/{sid}", timeout=5)
    assert record.status_code == 200 and record.json()["sid"] == sid


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


def test_sigint_with_webhooks_admin_keys_and_inbound_posts_in_use_exits_promptly(fake_provider_server,
                                                                                 fake_provider, receiver):
    # The hang came once in a few stops: gunicorn's SIGINT handler raised SystemExit in the
    # worker's main thread while it held a lock that the request threads then waited on
    # for good. Several stops under load, as a terminal's Ctrl-C sends it to all.
    for _ in range(6):
        service = Service({**twilio_env(fake_provider_server.url), "CALLBACK_SECRET": "c" * 24,
                           "ADMIN_API_KEYS": ADMIN_KEY, "STATUS_WEBHOOK_URL": receiver.url,
                           "STATUS_WEBHOOK_SECRET": SECRET, "RATE_LIMIT_MAX_REQUESTS": "100000",
                           "GUNICORN_THREADS": "16"}, workers=2, command=SERVE_COMMAND, group=True)
        service.env["PUBLIC_BASE_URL"] = service.url
        stop = threading.Event()

        def load(service=service, stop=stop):
            while not stop.is_set():
                try:
                    service.send(message(), timeout=5)
                    fake_provider.post_inbound(service.url, "+15558675311", "STOP")
                    requests.get(f"{service.url}/suppressions/+15558675311", timeout=5,
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"})
                    with fake_provider.lock:
                        sent = fake_provider.messages[-1] if fake_provider.messages else None
                    if sent and "_sid" in sent:  # answered already
                        fake_provider.post_status(sent, "delivered")
                except requests.RequestException:
                    pass  # the service is going away

        with service:
            threads = [threading.Thread(target=load) for _ in range(6)]
            for thread in threads:
                thread.start()
            time.sleep(1.5)
            started = time.monotonic()
            service.stop(sig=signal.SIGINT, timeout=60)
            took = time.monotonic() - started
            stop.set()
            for thread in threads:
                thread.join(15)
        assert took < 15, f"SIGINT took {took:.1f} s:\n{service.log_text()[-2000:]}"
        assert "SIGKILL" not in service.log_text()

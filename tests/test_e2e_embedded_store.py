"""End to end: zero-configuration `sms-service serve`, two workers on the embedded SQLite store.

Nothing but the provider is configured: the storage is the default file in STATE_DIR.
The limits must be exact across the workers, and the state must survive a restart.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support.payloads import message
from support.service import SERVE_COMMAND, Service, twilio_env

pytestmark = pytest.mark.e2e


def _serve(env: dict[str, str]) -> Service:
    return Service(env, workers=None, command=[*SERVE_COMMAND, "--workers", "2"])


def _post_all(url: str, payloads: list[dict], headers: dict | None = None) -> list[requests.Response]:
    with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
        return list(pool.map(lambda p: requests.post(f"{url}/send", json=p, headers=headers, timeout=30), payloads))


def test_zero_configuration_serve_uses_the_embedded_store(fake_provider_server, fake_provider):
    with _serve(twilio_env(fake_provider_server.url)) as service:
        deadline = time.monotonic() + 15  # /-/healthz answers once the first worker is up
        while len(service.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(service.worker_pids()) == 2
        assert service.send(message()).status_code == 200
        assert "STORAGE_URI" not in service.env
    assert (service.state_dir / "sms-service.db").stat().st_size > 0


def test_global_limit_is_exact_across_two_workers(fake_provider_server, fake_provider):
    env = {**twilio_env(fake_provider_server.url), "RATE_LIMIT_MAX_REQUESTS": "10"}
    with _serve(env) as service:
        responses = _post_all(service.url, [message() for _ in range(60)])
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 50
    assert fake_provider.count() == 10
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses if r.status_code == 429)


def test_receiver_delay_is_exact_across_two_workers(fake_provider_server, fake_provider):
    payload = message()
    with _serve(twilio_env(fake_provider_server.url)) as service:
        responses = _post_all(service.url, [payload] * 24)
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 1, statuses
        assert statuses.count(429) == 23
        time.sleep(1.1)
        assert service.send(payload).status_code == 200  # the second of the streak, 1 s later
        assert service.send(payload).status_code == 429  # now 2 s
    assert fake_provider.count() == 2


def test_idempotency_records_and_the_rate_limit_survive_a_restart(fake_provider_server, fake_provider):
    env = {**twilio_env(fake_provider_server.url), "STATE_DIR": tempfile.mkdtemp(prefix="sms-restart-"),
           "RATE_LIMIT_MAX_REQUESTS": "2"}
    payload, key = message(), {"Idempotency-Key": "restart-1"}
    with _serve(env) as first:
        sent = first.send(payload, headers=key)
        assert sent.status_code == 200
    with _serve(env) as second:
        replay = second.send(payload, headers=key)  # a replay takes no rate-limit slot (issue 22)
        other = second.send(message())  # the second request of the minute
        again = second.send(message())  # the third, across the restart
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == sent.json()
    assert other.status_code == 200
    assert again.status_code == 429 and "rate limit" in again.json()["message"]
    assert fake_provider.count() == 2

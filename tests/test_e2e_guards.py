"""End to end: the guards hold across gunicorn workers and instances sharing one Redis."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support.payloads import message
from support.service import Service, twilio_env

pytestmark = pytest.mark.e2e


def _post_all(urls_and_payloads):
    import requests

    def post(item):
        url, payload = item
        return requests.post(f"{url}/send", json=payload, timeout=30)

    with ThreadPoolExecutor(max_workers=len(urls_and_payloads)) as pool:
        return list(pool.map(post, urls_and_payloads))


def test_rate_limit_is_global_across_instances_and_workers(redis_uri, fake_provider_server, fake_provider):
    env = {**twilio_env(fake_provider_server.url), "STORAGE_URI": redis_uri,
           "RATE_LIMIT_MAX_REQUESTS": "10", "RATE_LIMIT_TIME_WINDOW": "1 minute"}
    with Service(env, workers=2) as first, Service(env, workers=2) as second:
        work = [((first if i % 2 else second).url, message()) for i in range(50)]
        responses = _post_all(work)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 40
    assert fake_provider.count() == 10
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["statusCode"] == "429"
    assert int(refused.headers["Retry-After"]) >= 1


def test_one_receiver_gets_one_message_then_waits(redis_uri, fake_provider_server, fake_provider):
    env = {**twilio_env(fake_provider_server.url), "STORAGE_URI": redis_uri}
    payload = message()
    with Service(env, workers=2) as first, Service(env, workers=2) as second:
        responses = _post_all([((first if i % 2 else second).url, payload) for i in range(20)])
        statuses = [r.status_code for r in responses]
        assert statuses.count(200) == 1, statuses
        assert statuses.count(429) == 19
        assert fake_provider.count() == 1
        retry_after = int(next(r for r in responses if r.status_code == 429).headers["Retry-After"])
        assert retry_after == 1
        time.sleep(retry_after + 0.1)
        assert first.send(payload).status_code == 200
        assert second.send(payload).status_code == 429  # now 2 s
        assert fake_provider.count() == 2


def test_redis_down_fails_closed_and_recovers(redis_server, redis_uri, fake_provider_server, fake_provider):
    env = {**twilio_env(fake_provider_server.url), "STORAGE_URI": redis_uri}
    with Service(env, workers=2) as service:
        assert service.send(message()).status_code == 200
        redis_server.stop()
        try:
            started = time.monotonic()
            response = service.send(message())
            assert time.monotonic() - started < 3
            assert response.status_code == 503
            assert response.json()["statusCode"] == "503"
            assert "storage" in response.json()["message"]
            assert fake_provider.count() == 1
            import requests

            assert requests.get(f"{service.url}/-/ready", timeout=5).status_code == 503
        finally:
            redis_server.start()
        deadline = time.monotonic() + 10
        while True:
            response = service.send(message())
            if response.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert response.status_code == 200
        assert fake_provider.count() == 2


@pytest.mark.parametrize(("balance", "status"), [("4.20", 200), ("0.00", 503), ("-1.50", 503)])
def test_balance_check_end_to_end(fake_provider_server, fake_provider, balance, status):
    env = {**twilio_env(fake_provider_server.url), "TWILIO_EMPTY_BALANCE_CHECK": "true"}
    fake_provider.balance = balance
    with Service(env) as service:
        response = service.send(message())
    assert response.status_code == status
    assert fake_provider.balance_calls >= 1
    assert fake_provider.count() == (1 if status == 200 else 0)


@pytest.mark.parametrize(("balance", "status"), [("9", 200), ("0", 503), ("-2", 503)])
def test_kaleyra_balance_check_end_to_end(fake_provider_server, fake_provider, balance, status):
    from support.service import kaleyra_env

    env = {**kaleyra_env(fake_provider_server.url), "KALEYRA_EMPTY_BALANCE_CHECK": "true"}
    fake_provider.balance = balance
    with Service(env) as service:
        response = service.send(message())
    assert response.status_code == status
    assert fake_provider.count() == (1 if status == 200 else 0)


def test_memory_storage_with_two_workers_refuses_to_start():
    # tests/test_serve.py asks for the two workers in every other way gunicorn takes.
    service = Service({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"}, workers=2)
    with pytest.raises(RuntimeError):
        service.start(timeout=15)
    assert service.process.returncode == 1
    refusal = [r for r in service.log_records() if "STORAGE_URI" in r["message"]]
    assert len(refusal) == 1 and "memory://" in refusal[0]["message"] and "2 workers" in refusal[0]["message"]


def test_idempotency_key_holds_across_instances(redis_uri, fake_provider_server, fake_provider):
    import requests

    env = {**twilio_env(fake_provider_server.url), "STORAGE_URI": redis_uri}
    fake_provider.mode = "slow"
    fake_provider.slow_seconds = 1
    payload = message()
    with Service(env, workers=2) as first, Service(env, workers=2) as second:
        def post(url):
            return requests.post(f"{url}/send", json=payload, headers={"Idempotency-Key": "across-1"}, timeout=30)

        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(post, [(first if i % 2 else second).url for i in range(10)]))
        statuses = sorted(r.status_code for r in results)
        assert statuses.count(200) == 1 and statuses.count(409) == 9, statuses
        replay = post(second.url)
        assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == next(r for r in results if r.status_code == 200).json()
    assert fake_provider.count() == 1

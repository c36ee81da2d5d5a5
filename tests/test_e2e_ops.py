"""End to end operations: metrics across workers, JSON logs and their hygiene, SIGTERM."""

import json
import signal
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support.payloads import message
from support.service import Service, kaleyra_env, twilio_env

pytestmark = pytest.mark.e2e

SECRET_TOKEN = "ZZsecretTOKEN" + "q" * 19
SECRET_BODY = "OTP 918273 for account ZZBODYMARKER"


def scrape(url):
    text = requests.get(f"{url}/-/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return samples


def test_metrics_are_summed_across_workers(redis_uri, fake_provider_server, fake_provider):
    env = {**twilio_env(fake_provider_server.url), "STORAGE_URI": redis_uri}
    with Service(env, workers=2) as service:
        sends = 12
        for _ in range(sends):
            assert service.send(message()).status_code == 200
        assert service.send({"sender": "ACME"}).status_code == 400
        fake_provider.mode = "reject"
        assert service.send(message()).status_code == 400
        # Whichever worker answers the scrape, it reports the whole deployment.
        for _ in range(4):
            samples = scrape(service.url)
            assert samples[("sms_messages_accepted_total", (("provider", "twilio"),))] == sends
            assert samples[("sms_send_requests_total", (("reason", "ok"), ("status_class", "2xx")))] == sends
            assert samples[("sms_send_requests_total", (("reason", "validation"), ("status_class", "4xx")))] == 1
            assert samples[("sms_send_requests_total",
                            (("reason", "provider_rejected"), ("status_class", "4xx")))] == 1
            assert samples[("sms_segments_total", (("encoding", "GSM-7"), ("provider", "twilio")))] == sends
            assert samples[("sms_provider_request_duration_seconds_count",
                            (("outcome", "accepted"), ("provider", "twilio")))] == sends
    assert fake_provider.count() == sends + 1


SECRET_ENVS = {
    "twilio": lambda url: {**twilio_env(url), "TWILIO_AUTH_TOKEN": SECRET_TOKEN},
    "kaleyra": lambda url: {**kaleyra_env(url), "KALEYRA_API_KEY": SECRET_TOKEN},
}


@pytest.mark.parametrize("provider", ["twilio", "kaleyra"])
def test_logs_are_json_with_request_ids_and_leak_nothing(fake_provider_server, fake_provider, provider):
    env = {**SECRET_ENVS[provider](fake_provider_server.url), "PROVIDER_TIMEOUT": "1",
           "RATE_LIMIT_MAX_REQUESTS": "40"}
    receivers, responses_seen = [], []
    with Service(env) as service:
        def send(mode="ok", **overrides):
            fake_provider.mode = mode
            payload = message(body=SECRET_BODY, **overrides)
            receivers.append(payload["receiver"])
            response = service.send(payload, headers={"X-Request-Id": f"trace-{len(receivers)}"})
            responses_seen.append(response)
            return response

        assert send().status_code == 200
        assert send(receiver=receivers[0]).status_code == 429  # exponential delay
        assert send("reject").status_code == 400
        assert send("error500").status_code == 502
        assert send("auth").status_code == 502
        assert send("rate_limited").status_code == 429
        assert send("not_json").status_code == 502
        fake_provider.slow_seconds = 2
        assert send("slow").status_code == 504
        assert send(receiver="+1555").status_code == 400
        assert send(receiver="+19005551234").status_code == 403
        bad = requests.post(f"{service.url}/send", data=json.dumps({"body": SECRET_BODY}), timeout=5,
                            headers={"Content-Type": "text/plain"})
        assert bad.status_code == 415
        assert requests.get(f"{service.url}/nowhere", timeout=5).status_code == 404
        time.sleep(0.3)
    text = service.log_text()
    assert SECRET_TOKEN not in text
    assert all(SECRET_TOKEN not in r.text for r in responses_seen)
    assert "ZZBODYMARKER" not in text and "918273" not in text
    for receiver in receivers:
        assert receiver not in text and receiver[1:] not in text
    records = service.log_records()  # raises if any line is not JSON
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    assert len(access) >= 12 and all(r["request_id"] for r in access)
    assert {r["request_id"] for r in access} >= {f"trace-{i}" for i in range(1, 11)}
    accepted = [r for r in access if "sid" in r]
    assert len(accepted) == 1
    assert accepted[0]["request_id"] == "trace-1" and accepted[0]["status"] == 200
    assert accepted[0]["receiver"].startswith("+1***") and len(accepted[0]["receiver"]) == 7
    assert accepted[0]["provider"] == provider and accepted[0]["sms_status"] == "queued"
    assert accepted[0]["segments"] == 1 and accepted[0]["provider_ms"] >= 0
    auth = [r for r in records if r["message"] == "provider refused our credentials"]
    assert auth and auth[0]["level"] == "ERROR" and auth[0]["request_id"] == "trace-5"
    assert not any("Traceback" in line for line in text.splitlines())


def test_sigterm_lets_the_inflight_send_finish(fake_provider_server, fake_provider):
    env = {**twilio_env(fake_provider_server.url), "PROVIDER_TIMEOUT": "5"}
    service = Service(env).start()
    fake_provider.mode = "slow"
    fake_provider.slow_seconds = 2
    result = {}

    def slow_send():
        result["response"] = service.send(message())

    sender = threading.Thread(target=slow_send)
    sender.start()
    time.sleep(0.7)  # the request is now waiting on the provider
    service.process.send_signal(signal.SIGTERM)
    sender.join(timeout=15)
    assert result["response"].status_code == 200
    assert service.process.wait(timeout=15) == 0
    assert fake_provider.count() == 1
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{service.url}/-/healthz", timeout=2)

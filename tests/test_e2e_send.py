"""End to end: real gunicorn, a fake provider on 127.0.0.1, the documented answers."""

import re
import time

import pytest
from support.payloads import REFERENCE, message
from support.service import TWILIO_SID, TWILIO_TOKEN, Service, kaleyra_env, twilio_env

pytestmark = pytest.mark.e2e

ENVS = {"twilio": twilio_env, "kaleyra": kaleyra_env}


@pytest.fixture(scope="module", params=["twilio", "kaleyra"])
def provider_service(request, fake_provider_server):
    env = {**ENVS[request.param](fake_provider_server.url), "PROVIDER_TIMEOUT": "1"}
    with Service(env) as service:
        yield request.param, service


def test_reference_example(provider_service, fake_provider):
    name, service = provider_service
    response = service.send(REFERENCE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"dateEvent", "numSegments", "sid", "status"}
    assert all(isinstance(value, str) for value in body.values())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["dateEvent"])
    assert body["numSegments"] == "1" and body["status"] == "queued" and body["sid"]
    assert fake_provider.count() == 1
    sent = fake_provider.messages[0]
    assert sent["provider"] == name
    if name == "twilio":
        assert (sent["To"], sent["From"], sent["Body"]) == (REFERENCE["receiver"], REFERENCE["sender"], REFERENCE["body"])
        assert sent["_auth"].startswith("Basic ")
    else:
        assert (sent["to"], sent["sender"], sent["body"]) == (REFERENCE["receiver"], REFERENCE["sender"], REFERENCE["body"])
        assert sent["_auth"] == "Akey" + "7" * 28
    assert response.headers["X-Request-Id"]


@pytest.mark.parametrize(
    ("mode", "status"),
    [("reject", 400), ("error500", 502), ("error503", 502), ("auth", 502), ("rate_limited", 429),
     ("not_json", 502), ("no_id", 502), ("huge", 502)],
)
def test_provider_failures(provider_service, fake_provider, mode, status):
    _, service = provider_service
    fake_provider.mode = mode
    response = service.send(message())
    assert response.status_code == status, response.text
    body = response.json()
    assert body["statusCode"] == str(status) and body["message"]
    assert fake_provider.count() == 1  # received once, never retried
    if mode == "rate_limited":
        assert response.headers["Retry-After"] == "7"


def test_provider_timeout_is_504_within_the_bound(provider_service, fake_provider):
    _, service = provider_service
    fake_provider.mode = "slow"
    fake_provider.slow_seconds = 3
    started = time.monotonic()
    response = service.send(message())
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["statusCode"] == "504"
    assert elapsed < 2.0  # PROVIDER_TIMEOUT is 1 s
    assert fake_provider.count() == 1


def test_kaleyra_error_inside_a_2xx(fake_provider_server, fake_provider):
    with Service(kaleyra_env(fake_provider_server.url)) as service:
        fake_provider.mode = "kaleyra_error_2xx"
        response = service.send(message())
    assert response.status_code == 400
    assert "E101" in response.json()["message"]


@pytest.mark.parametrize("provider", ["twilio", "kaleyra"])
def test_connection_refused_is_502(provider):
    from support.ports import free_port

    with Service(ENVS[provider](f"http://127.0.0.1:{free_port()}")) as service:
        response = service.send(message())
    assert response.status_code == 502
    assert response.json()["statusCode"] == "502"


def test_bad_configuration_stops_startup_with_one_line():
    service = Service({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID})
    with pytest.raises(RuntimeError):
        service.start(timeout=15)
    lines = [r for r in service.log_records() if r["level"] == "CRITICAL"]
    assert len(lines) == 1
    assert "TWILIO_AUTH_TOKEN" in lines[0]["message"]
    assert service.process.returncode != 0


def test_unknown_provider_lists_installed():
    service = Service({"SERVICE_PROVIDER": "carrier-pigeon"})
    with pytest.raises(RuntimeError):
        service.start(timeout=15)
    text = service.log_text()
    assert "carrier-pigeon" in text and "twilio" in text and "kaleyra" in text and "console" in text
    assert TWILIO_TOKEN not in text

"""Probes, the OpenAPI document and request ids (in process)."""

import pytest
from openapi_spec_validator import validate
from support.ports import free_port

from sms_service.app import create_app


def test_liveness(client):
    response = client.get("/-/healthz")
    assert response.status_code == 200
    assert response.get_json()["status"] == "OK"


def test_ready_when_storage_answers(client):
    response = client.get("/-/ready")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"provider": "OK", "storage": "OK", "process": "OK"}


@pytest.fixture
def app_with_dead_redis():
    return create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": f"redis://127.0.0.1:{free_port()}/0"})


def test_not_ready_when_storage_is_down(app_with_dead_redis):
    client = app_with_dead_redis.test_client()
    response = client.get("/-/ready")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "KO" and body["checks"]["storage"] == "KO"
    assert body["statusCode"] == "503" and "storage" in body["message"]
    check_up = client.get("/-/check-up")
    assert check_up.status_code == 503 and check_up.get_json()["checks"] == {"storage": "KO"}
    assert client.get("/-/healthz").status_code == 200


def test_not_ready_once_shutdown_begins(client, monkeypatch):
    from sms_service import lifecycle

    monkeypatch.setattr(lifecycle, "_shutting_down", type(lifecycle._shutting_down)())
    lifecycle.begin_shutdown()
    response = client.get("/-/ready")
    assert response.status_code == 503 and response.get_json()["checks"]["process"] == "KO"


def test_probes_are_not_rate_limited():
    app = create_app({"SERVICE_PROVIDER": "console", "RATE_LIMIT_MAX_REQUESTS": "1"})
    client = app.test_client()
    assert client.post("/send", json={}).status_code == 400  # uses the one slot
    assert client.post("/send", json={}).status_code == 429
    for _ in range(5):
        assert client.get("/-/ready").status_code == 200
        assert client.get("/-/metrics").status_code == 200


def test_openapi_document_is_valid_and_complete(client):
    document = client.get("/documentation/json").get_json()
    validate(document)
    operation = document["paths"]["/send"]["post"]
    assert set(operation["responses"]) >= {"200", "400", "403", "413", "415", "429", "502", "503", "504"}
    assert "Retry-After" in operation["responses"]["429"]["headers"]
    schemas = document["components"]["schemas"]
    request = schemas["SendRequest"]
    # body, or template with its personalisation (SPEC section 16): neither is required alone.
    assert set(request["required"]) == {"sender", "receiver"}
    assert {"body", "template", "personalisation", "templateVersion"} <= set(request["properties"])
    assert request["properties"]["receiver"]["pattern"] == r"^\+[1-9][0-9]{1,14}$"
    assert request["properties"]["body"]["maxLength"] == 1600
    assert request.get("additionalProperties") is False
    assert set(schemas["Receipt"]["properties"]) == {"dateEvent", "numSegments", "sid", "status"}
    assert set(schemas["Error"]["properties"]) == {"statusCode", "error", "message"}

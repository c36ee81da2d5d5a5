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
    validate(document)  # openapi-spec-validator
    assert document["servers"] == [{"url": "/", "description": "this sms-service"}]
    assert "PaginationMetadata" not in document["components"]["schemas"]
    assert set(document["components"]["securitySchemes"]) == {"apiKey", "adminKey"}
    assert set(document["components"]["headers"]) == {"X-Request-Id", "Idempotent-Replayed", "Retry-After"}
    for path in ("/-/healthz", "/-/ready", "/-/check-up", "/-/metrics"):
        assert document["paths"][path]["get"]["security"] == []
    assert "text/plain" in document["paths"]["/-/metrics"]["get"]["responses"]["200"]["content"]
    assert set(document["paths"]["/-/ready"]["get"]["responses"]) == {"200", "503"}
    estimate = document["paths"]["/estimate"]["post"]
    assert "502" in estimate["responses"]
    for path, method in (("/send", "post"), ("/estimate", "post"), ("/messages/{sid}", "get")):
        assert "security" not in document["paths"][path][method]  # API_KEYS is not set: no key is asked
    assert document["paths"]["/suppressions/{number}"]["get"]["security"] == [{"adminKey": []}]
    assert document["paths"]["/callbacks/{provider}/status"]["post"]["security"] == []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":  # the path's own, not an operation
                continue
            assert {"name": "X-Request-Id", "in": "header"}.items() <= next(
                p for p in operation["parameters"] if p.get("name") == "X-Request-Id").items(), path
            for status, response in operation["responses"].items():
                if status != "default":
                    assert "X-Request-Id" in response["headers"], (path, status)
    sent = document["paths"]["/send"]["post"]["responses"]
    assert set(sent["200"]["headers"]) == {"X-Request-Id", "Idempotent-Replayed"}
    assert sent["429"]["headers"]["Retry-After"] == {"$ref": "#/components/headers/Retry-After"}


def test_openapi_asks_for_the_api_key_when_api_keys_is_set():
    document = create_app({"SERVICE_PROVIDER": "console", "API_KEYS": "k" * 20}).test_client().get(
        "/documentation/json", headers={"Authorization": "Bearer " + "k" * 20}).get_json()
    validate(document)
    for path, method in (("/send", "post"), ("/estimate", "post"), ("/messages/{sid}", "get")):
        assert document["paths"][path][method]["security"] == [{"apiKey": []}]
    assert document["paths"]["/-/ready"]["get"]["security"] == []


def test_openapi_servers_name_the_public_base_url():
    app = create_app({"SERVICE_PROVIDER": "console", "PUBLIC_BASE_URL": "https://sms.example.com",
                      "CALLBACK_SECRET": "c" * 20})
    document = app.test_client().get("/documentation/json").get_json()
    validate(document)
    assert document["servers"][0]["url"] == "https://sms.example.com"
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

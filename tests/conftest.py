"""Shared fixtures: an in-process app on the console provider, real redis, a fake provider."""

from __future__ import annotations

import pytest
from support.fake_provider import FakeProvider
from support.redis_server import RedisServer

from sms_service.app import create_app


@pytest.fixture
def app():
    return create_app({"SERVICE_PROVIDER": "console"})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_uri(redis_server):
    if redis_server.process is None:
        redis_server.start()
    redis_server.flush()
    return redis_server.uri


@pytest.fixture(scope="session")
def fake_provider_server():
    fake = FakeProvider().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_provider(fake_provider_server):
    fake_provider_server.reset()
    return fake_provider_server

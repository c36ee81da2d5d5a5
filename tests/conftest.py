"""Shared fixtures: an in-process app on the console provider, real redis, a fake provider."""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile

import pytest
from support.fake_provider import FakeProvider
from support.redis_server import RedisServer
from support.redis_topologies import RedisCluster, RedisSentinels

from sms_service.app import create_app

# The default storage is an SQLite file under $HOME/.local/state: the tests never share
# it with the developer's own service, nor with an earlier run (module level, because
# some test modules build their app at import).
os.environ["HOME"] = tempfile.mkdtemp(prefix="sms-test-home-")
os.environ.pop("XDG_STATE_HOME", None)
os.environ.pop("STATE_DIR", None)


@pytest.fixture(autouse=True)
def _own_state_directory(tmp_path, monkeypatch):
    """Give each test its own default state directory, so no limit or record leaks between tests."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _loopback_only(host) -> None:
    if isinstance(host, str) and host in ("localhost", ""):
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ConnectionRefusedError(f"tests may only reach loopback addresses, not {host!r}")


@pytest.fixture(autouse=True, scope="session")
def _no_network_beyond_loopback():
    """Make any attempt to reach a real provider fail loudly instead of leaving the machine."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            _loopback_only(address[0])
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        _loopback_only(host.decode() if isinstance(host, bytes) else host)
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect
    socket.getaddrinfo = getaddrinfo
    yield
    socket.socket.connect, socket.getaddrinfo = real_connect, real_getaddrinfo


@pytest.fixture
def connects(monkeypatch):
    """Every address a socket of this process tries to connect to, in order."""
    tried = []
    real_connect = socket.socket.connect

    def connect(sock, address):
        tried.append(address)
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return tried


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
def redis_cluster():
    """A real 3-primary Redis Cluster, created once per session."""
    cluster = RedisCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def redis_cluster_uri(redis_cluster):
    redis_cluster.flush()
    return redis_cluster.uri


@pytest.fixture(scope="session")
def redis_sentinels():
    """A real primary, its replica and three Sentinels, started once per session."""
    sentinels = RedisSentinels().start()
    yield sentinels
    sentinels.stop()


@pytest.fixture
def redis_sentinel_uri(redis_sentinels):
    redis_sentinels.flush()
    return redis_sentinels.uri


_REDIS_FIXTURES = {"redis": "redis_uri", "redis-sentinel": "redis_sentinel_uri",
                   "redis-cluster": "redis_cluster_uri"}


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-sentinel", "redis-cluster"])
def storage_uri(request, tmp_path):
    """Each storage in turn: memory, a real SQLite file, a real redis-server, and Redis
    through three Sentinels and on a 3-primary Cluster."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state/sms.db"
    return request.getfixturevalue(_REDIS_FIXTURES[request.param])


@pytest.fixture(params=["sqlite", "redis", "redis-sentinel", "redis-cluster"])
def shared_storage_uri(request, tmp_path):
    """Each storage that several processes share: a real SQLite file, a real redis-server,
    Redis through Sentinels and on a Cluster."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared.db"
    return request.getfixturevalue(_REDIS_FIXTURES[request.param])


@pytest.fixture(scope="session")
def fake_provider_server():
    fake = FakeProvider().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_provider(fake_provider_server):
    fake_provider_server.reset()
    return fake_provider_server

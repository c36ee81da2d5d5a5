"""STORAGE_URI for Redis beyond one node: Sentinel and Cluster forms, read once, one line per mistake."""

from __future__ import annotations

import pytest

from sms_service.config import load_settings
from sms_service.exceptions import ConfigError
from sms_service.redis_topology import parse_redis_uri

BASE = {"SERVICE_PROVIDER": "console"}


@pytest.mark.parametrize(("uri", "kind", "hosts", "service", "db", "password", "tls"), [
    ("redis+sentinel://s1:26379,s2:26380/mymaster", "sentinel", (("s1", 26379), ("s2", 26380)),
     "mymaster", 0, None, False),
    ("redis+sentinel://:s3cret@s1:26379/mymaster/2", "sentinel", (("s1", 26379),), "mymaster", 2, "s3cret", False),
    ("rediss+sentinel://s1/mymaster", "sentinel", (("s1", 26379),), "mymaster", 0, None, True),
    ("redis+sentinel://[::1]:26379,10.0.0.2/svc", "sentinel", (("::1", 26379), ("10.0.0.2", 26379)),
     "svc", 0, None, False),
    ("redis+cluster://:pw@n1:7000,n2:7001,n3:7002", "cluster", (("n1", 7000), ("n2", 7001), ("n3", 7002)),
     None, 0, "pw", False),
    ("rediss+cluster://n1:7000/", "cluster", (("n1", 7000),), None, 0, None, True),
    ("redis+cluster://n1", "cluster", (("n1", 6379),), None, 0, None, False),
])
def test_sentinel_and_cluster_uris_are_read(uri, kind, hosts, service, db, password, tls):
    topology = load_settings({**BASE, "STORAGE_URI": uri}).redis_topology
    assert (topology.kind, topology.hosts, topology.service_name, topology.db, topology.password,
            topology.tls) == (kind, hosts, service, db, password, tls)


def test_user_and_password_both_reach_the_topology():
    topology = parse_redis_uri("redis+sentinel://app:p%40ss@s1:26379/mymaster")
    assert (topology.username, topology.password) == ("app", "p@ss")


@pytest.mark.parametrize(("uri", "says"), [
    ("redis+sentinel://s1:26379", "has no service name"),
    ("redis+sentinel://s1:26379/", "has no service name"),
    ("redis+sentinel:///mymaster", "names no Sentinel"),
    ("redis+sentinel://:pw@/mymaster", "names no Sentinel"),
    ("redis+cluster://", "names no cluster node"),
    ("redis+sentinel://s1:26x79/mymaster", "has a bad port '26x79' for host s1"),
    ("redis+cluster://n1:7000,n2:99999", "has a bad port '99999' for host n2"),
    ("redis+cluster://n1:7000,n2:", "has a bad port"),
    ("redis+sentinel://s1/mymaster/zero", "database that is not a whole number"),
    ("redis+sentinel://s1/mymaster/0/extra", "too many path parts"),
    ("redis+cluster://n1:7000/3", "a cluster has only database 0"),
    ("redis+sentinel://s1/mymaster?x=1", "no query"),
    ("redis://", "has no host"),
    ("redis://h:port/0", "port that is not a number"),
])
def test_each_mistake_is_one_line_naming_the_variable(uri, says):
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "STORAGE_URI": uri})
    message = caught.value.message
    assert message.startswith("STORAGE_URI ") and says in message and "\n" not in message


def test_a_mistake_never_shows_the_password():
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "STORAGE_URI": "redis+sentinel://:hunter2secret@s1:26379"})
    assert "hunter2secret" not in caught.value.message


def test_an_unknown_scheme_lists_the_forms():
    with pytest.raises(ConfigError, match="redis\\+sentinel:// or redis\\+cluster://"):
        load_settings({**BASE, "STORAGE_URI": "redis+sentinels://s1/m"})


def test_plain_redis_keeps_its_form():
    topology = load_settings({**BASE, "STORAGE_URI": "redis://localhost:6379/2"}).redis_topology
    assert topology.kind == "single" and topology.url == "redis://localhost:6379/2"
    assert load_settings({**BASE, "STORAGE_URI": "memory://"}).redis_topology is None


def test_the_description_names_the_topology_without_the_password():
    line = parse_redis_uri("redis+sentinel://:pw@s1:26379,s2:26379/mymaster").describe()
    assert line == "redis sentinel service mymaster via s1:26379,s2:26379"
    assert parse_redis_uri("redis+cluster://:pw@n1:7000").describe() == "redis cluster via n1:7000"


@pytest.mark.parametrize("which", ["redis_sentinels", "redis_cluster"])
def test_check_config_names_the_topology_and_its_primary(which, request, monkeypatch, capsys):
    from sms_service import cli

    topology = request.getfixturevalue(which)
    monkeypatch.setenv("SERVICE_PROVIDER", "console")
    monkeypatch.setenv("STORAGE_URI", topology.uri)
    assert cli.main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "topology-pw" not in out  # never the password
    if which == "redis_sentinels":
        assert f"; primary 127.0.0.1:{topology.primary()}\n" in out
        assert "storage: redis sentinel service mymaster via 127.0.0.1:" in out
    else:
        primaries = ",".join(sorted(f"127.0.0.1:{p}" for p in topology.ports))
        assert out.endswith(f"; primaries {primaries}\n"), out


def test_check_config_says_when_the_primary_cannot_be_reached(monkeypatch, capsys):
    from support.ports import free_port

    from sms_service import cli

    monkeypatch.setenv("SERVICE_PROVIDER", "console")
    port = free_port()
    monkeypatch.setenv("STORAGE_URI", f"redis+sentinel://127.0.0.1:{port}/mymaster")
    # check-config checks what start-up checks (SPEC section 21): a storage that cannot be
    # reached is an error, in one line that names STORAGE_URI.
    assert cli.main(["check-config"]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("configuration error")]
    assert len(errors) == 1
    assert errors[0].startswith(f"configuration error: STORAGE_URI redis+sentinel://127.0.0.1:{port}/mymaster "
                                "cannot be reached or written (MasterNotFoundError: No master found for 'mymaster')")
    assert "<redis" not in errors[0]


def test_the_tls_forms_connect_over_tls_to_sentinels_and_data_nodes():
    from redis.connection import SSLConnection
    from redis.sentinel import SentinelManagedSSLConnection

    from sms_service.storage import RedisStorage

    store = RedisStorage("rediss+sentinel://:pw@127.0.0.1:1,127.0.0.1:2/mymaster/3")  # nothing listens
    try:
        pool = store.client.connection_pool
        assert pool.connection_class is SentinelManagedSSLConnection
        assert pool.connection_kwargs["password"] == "pw" and pool.connection_kwargs["db"] == 3
        sentinels = pool.proxy.sentinel_manager.sentinels
        assert [s.connection_pool.connection_class for s in sentinels] == [SSLConnection, SSLConnection]
        assert all(s.connection_pool.connection_kwargs["password"] == "pw" for s in sentinels)
    finally:
        store.close()

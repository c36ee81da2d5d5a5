"""Redis: hash-tagged keys, an outbox that loses nothing between its calls, the one-time upgrade."""

from __future__ import annotations

import json
import time

import pytest
import redis

from sms_service.status import model
from sms_service.storage import RedisStorage, open_storage
from sms_service.storage import redis as redis_backend
from sms_service.storage import redis_keys as keys


def _record(sid: str) -> dict:
    at = "2026-11-26T08:00:00.000Z"
    return {"sid": sid, "provider": "twilio", "receiver": "+1***10", "country": "US", "numSegments": "1",
            "encoding": "GSM-7", "dateEvent": at, "status": "queued", "providerStatus": "queued",
            "errorCode": None, "updatedAt": at, "owner": "",
            "history": [model.entry("queued", "queued", None, at)]}


def _entry(status: str) -> dict:
    return model.entry(status, status, None, "2026-11-26T08:00:05.000Z")


class Died(Exception):
    """The process 'died' at this point: nothing after it ran."""


@pytest.fixture(params=["redis", "redis-sentinel", "redis-cluster"])
def any_redis_uri(request):
    """One node, through Sentinels, on a Cluster: where the outbox spans two slots for real."""
    return request.getfixturevalue({"redis": "redis_uri", "redis-sentinel": "redis_sentinel_uri",
                                    "redis-cluster": "redis_cluster_uri"}[request.param])


@pytest.fixture
def store(any_redis_uri, monkeypatch):
    monkeypatch.setattr(redis_backend, "INDEX_GRACE_MS", 300)
    storage = open_storage(any_redis_uri)
    yield storage
    storage.close()


def test_every_key_of_an_entity_shares_one_hash_tag(redis_uri):
    store = open_storage(redis_uri)
    store.window_acquire("w1", 5, 60_000)
    store.delay_acquire("d1", 60_000)
    store.record_reserve("r1", "v", 60_000)
    store.budget_spend("US", 1, 10, 60_000)
    store.circuit_record("twilio", False, False, 5, 30_000)
    store.suppression_add("+12025550100", "api")
    store.message_create("m1", _record("m1"), 60_000)
    store.message_update("m1", _entry("sent"), {"sid": "m1"}, 60_000, "evt_1")
    direct = redis.Redis.from_url(redis_uri)
    names = sorted(k.decode() for k in direct.keys("*"))
    tags = {name: name[name.index("{") + 1:name.index("}")] for name in names}
    assert all(name.startswith("sms-service:{") for name in names), names
    # The listing index: one tag for the record's owner (here none: "msgidx:"), one for every owner.
    assert set(tags.values()) == {"window:w1", "delay:d1", "record:r1", "budget:US", "circuit:twilio",
                                  "suppressions", "msg:m1", "outbox", "meta", "msgidx:", "msgidx"}
    # The event sits beside its record, in the message's slot.
    assert tags["sms-service:{msg:m1}:event:evt_1"] == "msg:m1"
    store.close()


def test_a_writer_dying_after_the_index_leaves_nothing_behind(store, monkeypatch):
    store.message_create("m", _record("m"), 60_000)
    real = store._outbox_index

    def index_then_die(**kwargs):
        real(**kwargs)
        raise Died

    monkeypatch.setattr(store, "_outbox_index", index_then_die)
    with pytest.raises(Died):
        store.message_update("m", _entry("sent"), {"sid": "m"}, 60_000, "evt_dead")
    assert store.message_get("m")["status"] == "queued"  # nothing changed without its event
    assert store.webhook_claim(10, 30_000) == []  # not due before the grace
    time.sleep(0.35)
    assert store.webhook_claim(10, 30_000) == []  # dangling: repaired, never handed out
    assert store.webhook_stats() == (0, None)


def test_a_writer_dying_after_the_change_loses_no_event(store, monkeypatch):
    store.message_create("m", _record("m"), 60_000)

    def die(**kwargs):
        raise Died

    monkeypatch.setattr(store, "_outbox_ready", die)
    with pytest.raises(Died):
        store.message_update("m", _entry("sent"), {"sid": "m"}, 60_000, "evt_kept")
    assert store.message_get("m")["status"] == "sent"
    time.sleep(0.35)  # due once the grace has passed, as if its writer had made it due
    (event,) = store.webhook_claim(10, 30_000)
    assert (event.id, event.message_key, event.record["status"]) == ("evt_kept", "m", "sent")


def test_a_writer_stalled_past_the_grace_reindexes_under_a_new_id(store, any_redis_uri, monkeypatch):
    store.message_create("m", _record("m"), 60_000)
    real = store._outbox_index
    calls = []

    def index_then_stall(**kwargs):
        due = real(**kwargs)
        calls.append(kwargs["args"][0])
        if len(calls) == 1:
            time.sleep(0.35)
            other = open_storage(any_redis_uri)  # another worker's claim finds the id dangling
            assert other.webhook_claim(10, 30_000) == []
            other.close()
        return due

    monkeypatch.setattr(store, "_outbox_index", index_then_stall)
    store.message_update("m", _entry("sent"), {"sid": "m"}, 60_000, "evt_late")
    assert calls[0] == "evt_late" and len(calls) == 2 and calls[1] != "evt_late"
    (event,) = store.webhook_claim(10, 30_000)
    assert event.id == calls[1] and event.record["status"] == "sent"
    assert store.webhook_delivered(event.id)
    assert store.webhook_stats() == (0, None)


def test_an_update_without_an_event_costs_one_call(store, monkeypatch):
    store.message_create("m", _record("m"), 60_000)
    store.message_update("m", _entry("sent"), {"sid": "m"}, 60_000, "evt_1")

    def never(**kwargs):
        raise AssertionError("the outbox index was touched for no event")

    monkeypatch.setattr(store, "_outbox_index", never)
    store.message_update("m", _entry("sent"), {"sid": "m"}, 60_000, "evt_2")  # a repeat: no change
    store.message_update("x", _entry("sent"), {"sid": "x"}, 60_000, "evt_3")  # an orphan: no event
    store.message_create("n", _record("n"), 60_000, "evt_4")  # no orphan merged: no event


# -- the one-time upgrade of version 1 keys ---------------------------------------------


def _write_version_1(direct: redis.Redis) -> None:
    """What sms-service wrote before hash tags, as its scripts wrote it."""
    direct.hset("sms-service:suppressions", "+12025550100", "api 1764000000000")
    direct.set("sms-service:record:idem-1", "done:abc", px=3_600_000)
    record = {**_record("SMold"), "status": "sent"}
    direct.set("sms-service:message:twilio:SMold", json.dumps(record), px=3_600_000)
    snapshot = {k: v for k, v in record.items() if k != "owner"}
    direct.hset("sms-service:webhook:evt_old", mapping={
        "key": "sms-service:message:twilio:SMold", "record": json.dumps(snapshot),
        "created": 1764000000000, "attempts": 2, "lease": ""})
    direct.zadd("sms-service:webhooks:due", {"evt_old": 1764000000500})
    direct.zadd("sms-service:webhooks:created", {"evt_old": 1764000000000})
    direct.lpush("sms-service:window:rate", 1764000000000)
    direct.lpush("sms-service:budget:{US}", "1764000000000:3")
    direct.set("sms-service:budget:{US}:total", 3)
    direct.hset("sms-service:circuit:twilio", mapping={"f": 2, "r": 0, "l": 0})


def test_version_1_keys_are_upgraded_once_without_loss(redis_uri):
    direct = redis.Redis.from_url(redis_uri)
    _write_version_1(direct)
    store = RedisStorage(redis_uri)
    try:
        assert store.suppression_get("+12025550100") == ("api", 1764000000000)
        assert store.record_reserve("idem-1", "pending", 60_000) == "done:abc"
        assert 3_500_000 < direct.pttl(keys.record("idem-1")) <= 3_600_000  # its TTL kept
        assert store.message_get("twilio:SMold")["status"] == "sent"
        (event,) = store.webhook_claim(10, 30_000)
        assert (event.id, event.message_key, event.attempts) == ("evt_old", "twilio:SMold", 2)
        assert event.record["status"] == "sent" and event.age_ms > 0
        assert store.budget_peek("US", 1, 4, 10**12) == (0, 3)
        assert store.circuit_get("twilio")[:2] == ("closed", 2)
        assert direct.lrange(keys.window("rate"), 0, -1) == [b"1764000000000"]
        left = sorted(k.decode() for k in direct.keys("*") if not k.startswith(b"sms-service:{"))
        assert left == []
        assert direct.get(keys.SCHEME) == b"2"
    finally:
        store.close()
    # Once: a stray old key written later (an old process still running) is not touched.
    direct.set("sms-service:record:late", "x")
    RedisStorage(redis_uri).close()
    assert direct.get("sms-service:record:late") == b"x"


def test_an_upgrade_keeps_the_newer_of_two_suppression_entries(redis_uri):
    direct = redis.Redis.from_url(redis_uri)
    direct.hset("sms-service:suppressions", mapping={"+12025550100": "api 1", "+12025550101": "stop 2"})
    direct.hset(keys.SUPPRESSIONS, "+12025550100", "admin 5")
    store = RedisStorage(redis_uri)
    assert store.suppression_all() == [("+12025550100", "admin", 5), ("+12025550101", "stop", 2)]
    store.close()


def test_a_redis_down_at_start_is_upgraded_by_the_first_call_that_reaches_it(redis_server, redis_uri):
    redis_server.stop()
    try:
        store = RedisStorage(redis_uri)
    finally:
        redis_server.start()
    _write_version_1(redis.Redis.from_url(redis_uri))  # the server keeps nothing across its restart
    assert store.guarded(lambda: store.suppression_get("+12025550100")) == ("api", 1764000000000)
    store.close()


# -- writes that must survive a failover wait for a replica -------------------------------


def test_durable_writes_are_on_the_replica_when_they_answer(redis_sentinels, redis_sentinel_uri):
    store = open_storage(redis_sentinel_uri)
    replica = redis_sentinels.node(redis_sentinels.replica_port)
    try:
        assert store.record_reserve("durable", "pending-1", 60_000) is None
        assert replica.get(keys.record("durable")) == b"pending-1"
        assert store.record_swap("durable", "pending-1", "done-1", 60_000)
        assert replica.get(keys.record("durable")) == b"done-1"
        assert store.suppression_add("+12025550123", "api")
        assert replica.hget(keys.SUPPRESSIONS, "+12025550123").startswith(b"api ")
    finally:
        store.close()


def test_a_replica_that_does_not_acknowledge_delays_a_durable_write_by_the_wait_only(
        redis_sentinels, redis_sentinel_uri, caplog):
    import os
    import signal

    store = open_storage(redis_sentinel_uri)
    store.record_reserve("warm-up", "v", 60_000)  # connected, replicas known
    replica = redis_sentinels.processes[redis_sentinels.replica_port]
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        with caplog.at_level("WARNING", logger="sms_service.storage"):
            started = time.monotonic()
            assert store.record_reserve("unacknowledged", "v", 60_000) is None
            took = time.monotonic() - started
    finally:
        os.kill(replica.pid, signal.SIGCONT)
        store.close()
    assert redis_backend.WAIT_TIMEOUT_MS / 1000 <= took < 0.5, took
    assert any("no replica acknowledged" in r.getMessage() for r in caplog.records)


def test_a_primary_without_replicas_does_not_wait(redis_uri, monkeypatch):
    store = open_storage(redis_uri)
    sent = []
    queue = redis.client.Pipeline.pipeline_execute_command

    def queued(pipe, *args, **options):
        sent.append(args[0])
        return queue(pipe, *args, **options)

    monkeypatch.setattr(redis.client.Pipeline, "execute_command", queued)
    try:
        assert store.record_reserve("alone", "v", 60_000) is None
    finally:
        store.close()
    assert "WAIT" not in sent and sent  # the reservation went through the pipeline, with no WAIT


def test_durable_writes_follow_ask_and_moved_on_a_cluster(redis_cluster, redis_cluster_uri):
    from redis.crc import key_slot

    store = open_storage(redis_cluster_uri)
    name = keys.record("ask-me")
    slot = key_slot(name.encode())
    (source,) = [int(primary[1]) for start, end, primary, *_ in
                 redis_cluster.node(redis_cluster.ports[0]).execute_command("CLUSTER", "SLOTS")
                 if start <= slot <= end]
    target = next(p for p in redis_cluster.ports if p != source)
    ids = {p: redis_cluster.node(p).execute_command("CLUSTER", "MYID").decode() for p in (source, target)}
    try:
        assert store.record_reserve("warm-up", "v", 60_000) is None  # the slot map is read
        # The slot is half-way to `target`: a key the source does not hold is asked for there.
        redis_cluster.node(target).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        redis_cluster.node(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        assert store.record_reserve("ask-me", "first", 60_000) is None
        asking = redis_cluster.node(target).pipeline(transaction=False)
        asking.execute_command("ASKING")
        asking.get(name)
        assert asking.execute()[1] == b"first"  # written on the importing node, as ASK said
        # Then the slot is the target's, which the client's slot map does not know yet: MOVED.
        for port in redis_cluster.ports:
            redis_cluster.node(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
        assert store.record_reserve("ask-me", "second", 60_000) == "first"
        assert store.record_swap("ask-me", "first", "done", 60_000)
        assert redis_cluster.node(target).get(name) == b"done"
    finally:
        store.close()

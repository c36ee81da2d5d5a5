"""A send's message record and its listing index on Redis (issue 24): one round trip on one node.

On plain Redis and Sentinel the record, its listing index and the reconciler's due time
are written by one script; a Redis Cluster, whose keys sit in several slots, writes the
record and then the index in a second call. Either way a failed index write leaves the
record stored and says so in the log.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
import redis
import redis.cluster

from sms_service.status import model
from sms_service.storage import open_storage
from sms_service.storage import redis_keys as keys

TTL_MS = 86_400_000


@pytest.fixture(params=["redis", "redis-sentinel", "redis-cluster"])
def storage(request):
    uri = request.getfixturevalue({"redis": "redis_uri", "redis-sentinel": "redis_sentinel_uri",
                                   "redis-cluster": "redis_cluster_uri"}[request.param])
    store = open_storage(uri)
    yield store
    store.close()


def _record(sid: str, owner: str = "alice", check_at: int | None = None) -> dict:
    stamp = model.timestamp(dt.datetime.now(dt.UTC))
    record = {
        "sid": sid, "provider": "twilio", "receiver": "+1***10", "country": "US", "numSegments": "1",
        "encoding": "GSM-7", "dateEvent": stamp, "status": "queued", "providerStatus": "queued",
        "errorCode": None, "updatedAt": stamp, "owner": owner, "receiverHash": f"hash-{sid}",
        "history": [model.entry("queued", "queued", None, stamp)],
    }
    if check_at is not None:
        record["checkAt"] = check_at
    return record


@pytest.fixture
def round_trips(monkeypatch):
    """Requests sent to Redis from now on: each command, script or pipeline is one."""
    sent: list[str] = []

    def count(cls, name: str, label=None) -> None:
        original = getattr(cls, name)

        def counted(self, *args, **options):
            sent.append(label or str(args[0]))
            return original(self, *args, **options)

        monkeypatch.setattr(cls, name, counted)

    count(redis.Redis, "execute_command")
    count(redis.client.Pipeline, "execute", "pipeline")
    count(redis.cluster.RedisCluster, "execute_command")
    count(redis.cluster.ClusterPipeline, "execute", "pipeline")
    return sent


def test_a_new_record_is_listed_by_every_filter_and_due_for_the_reconciler(storage):
    check_at = 1_900_000_000_000
    storage.message_create("twilio:SMlisted", _record("SMlisted", check_at=check_at), TTL_MS)
    assert storage.message_get("twilio:SMlisted")["sid"] == "SMlisted"
    for owner, filters in (("alice", {}), (None, {}), ("alice", {"status": "queued"}),
                           ("alice", {"provider": "twilio"}), (None, {"receiver_hash": "hash-SMlisted"})):
        records, _ = storage.message_list(owner, limit=10, **filters)
        assert [r["sid"] for r in records] == ["SMlisted"], (owner, filters)
    assert storage.message_list("bob", limit=10) == ([], None)
    assert storage.client.zscore(keys.RECONCILE_DUE, "twilio:SMlisted") == check_at


def test_one_round_trip_writes_the_record_and_its_index_on_one_node(storage, round_trips):
    storage.message_create("twilio:SMwarm", _record("SMwarm"), TTL_MS)  # scripts loaded
    round_trips.clear()
    storage.message_create("twilio:SMone", _record("SMone", check_at=1_900_000_000_000), TTL_MS)
    if storage.topology.kind == "cluster":
        # The record's slot, then the index's: two requests, never more.
        assert not storage._one_node()
        assert len(round_trips) == 2, round_trips
    else:
        assert round_trips == ["EVALSHA"]
    assert sorted(r["sid"] for r in storage.message_list("alice", limit=10)[0]) == ["SMone", "SMwarm"]


def test_a_live_record_is_left_alone_and_not_indexed_again(storage):
    first = _record("SMtwice")
    storage.message_create("twilio:SMtwice", first, TTL_MS)
    storage.message_update("twilio:SMtwice", model.entry("delivered", "delivered", None, model.timestamp()),
                           {}, TTL_MS)
    assert storage.message_create("twilio:SMtwice", _record("SMtwice"), TTL_MS) is False
    assert storage.message_get("twilio:SMtwice")["status"] == "delivered"
    assert storage.message_list("alice", limit=10, status="queued") == ([], None)
    assert [r["sid"] for r in storage.message_list("alice", limit=10, status="delivered")[0]] == ["SMtwice"]


def test_a_failed_index_write_keeps_the_record_and_is_logged(storage, caplog):
    # A key of the wrong type makes the index's ZADD fail inside the write.
    by_time = f"{keys.message_index('alice')}:by-time"
    storage.client.set(by_time, "not a sorted set")
    try:
        with caplog.at_level(logging.WARNING, logger="sms_service.storage.redis"):
            assert storage.message_create("twilio:SMbroken", _record("SMbroken"), TTL_MS) is False
        assert storage.message_get("twilio:SMbroken")["sid"] == "SMbroken"
        assert any(r.getMessage() == "message listing index not updated" for r in caplog.records)
        # The every-owner index does not depend on the broken one.
        assert [r["sid"] for r in storage.message_list(None, limit=10)[0]] == ["SMbroken"]
    finally:
        storage.client.delete(by_time)

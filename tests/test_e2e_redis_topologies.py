"""End to end on Redis beyond one node: a Sentinel failover and a Cluster reshard under load,
through real gunicorn instances sending to the fake provider."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
import requests
from support.payloads import message
from support.redis_topologies import RedisSentinels
from support.service import Service, twilio_env

pytestmark = pytest.mark.e2e

# docs/redis-topologies.md: a failover may forget the rate-limit counts of at most the
# last second before the primary was lost.
LOSS_WINDOW_S = 1.0


class Load:
    """Threads sending fresh messages to each service until stopped, every answer kept."""

    def __init__(self, services: list[Service], pause_s: float = 0.05, keyed: bool = False) -> None:
        self.services, self.pause_s, self.keyed = services, pause_s, keyed
        self.sent: list[tuple[dict, dict]] = []  # payload and headers of each keyed request
        self.answers: list[tuple[float, float, int | None, object]] = []  # start, end, status, body
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(s,), daemon=True) for s in services]

    def _run(self, service: Service) -> None:
        while not self.stopped.is_set():
            start = time.monotonic()
            payload, headers = message(), {}
            if self.keyed:
                headers = {"Idempotency-Key": f"load-{uuid.uuid4().hex}"}
                with self.lock:
                    self.sent.append((payload, headers))
            try:
                response = service.send(payload, headers=headers, timeout=15)
                status, body = response.status_code, response.json()
            except (requests.RequestException, ValueError) as exc:
                status, body = None, repr(exc)
            with self.lock:
                self.answers.append((start, time.monotonic(), status, body))
            time.sleep(self.pause_s)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def statuses(self) -> Counter:
        with self.lock:
            return Counter(status for _, _, status, _ in self.answers)


def _wait_for(condition, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError(what)


def test_a_sentinel_failover_under_load_fails_closed_then_serves_again_by_itself(
        fake_provider_server, fake_provider):
    sentinels = RedisSentinels(down_after_ms=1000).start()
    limit = 150
    env = {**twilio_env(fake_provider_server.url), "STORAGE_URI": sentinels.uri,
           "RATE_LIMIT_MAX_REQUESTS": str(limit), "RATE_LIMIT_TIME_WINDOW": "1h"}
    try:
        with Service(env, workers=2) as first, Service(env, workers=2) as second:
            keyed, key = message(), {"Idempotency-Key": "before-the-failover"}
            before = first.send(keyed, headers=key)
            assert before.status_code == 200, before.text
            with Load([first, second]) as load:
                time.sleep(3)
                old_primary = sentinels.primary_port
                killed_at = time.monotonic()
                sentinels.kill(old_primary)
                promoted_at = _wait_for(lambda: sentinels.primary() not in (0, old_primary), 60,
                                        "no Sentinel promoted the replica")
                _wait_for(lambda: any(status == 200 and start >= promoted_at
                                      for start, _, status, _ in list(load.answers)), 30,
                          "never served again after the promotion")
                # Before the limit runs out (a refusal comes before any replay).
                replay_first = first.send(keyed, headers=key)
                replay_second = second.send(keyed, headers=key)
                # Run until the limit refuses, past 10 s after the promotion.
                _wait_for(lambda: time.monotonic() > promoted_at + 12 and load.statuses()[429] >= 5, 90,
                          "the rate limit was never reached after the failover")
            answers = sorted(load.answers)
            check_up = requests.get(f"{second.url}/-/check-up", timeout=10).json()
    finally:
        sentinels.stop()

    statuses = Counter(status for *_, status, _ in answers)
    assert set(statuses) <= {200, 429, 503}, statuses  # no 500, no connection dropped
    assert statuses[503] > 0, "the load never met the failover"
    # Fail closed only while there was no primary (and the few seconds to find the new one).
    unavailable = [(start, end, body) for start, end, status, body in answers if status == 503]
    assert all(end >= killed_at for _, end, _ in unavailable), "a 503 before the primary was killed"
    assert all(start <= promoted_at + 10 for start, _, _ in unavailable), \
        f"still failing {max(s for s, _, _ in unavailable) - promoted_at:.1f} s after the promotion"
    assert all(body["statusCode"] == "503" and body["error"] == "Service Unavailable"
               for _, _, body in unavailable)
    back = min(end for start, end, status, _ in answers if status == 200 and start >= promoted_at)
    print(f"failover: promoted {promoted_at - killed_at:.2f} s after the kill, served again "
          f"{back - promoted_at:.2f} s after the promotion; answers {dict(statuses)}")
    assert back - promoted_at <= 10, f"served again only {back - promoted_at:.1f} s after the promotion"
    # Every 200 is one SMS and a 503 none: nothing sent while failing closed, nothing twice.
    assert fake_provider.count() == statuses[200] + 1
    assert max(Counter(m["To"] for m in fake_provider.messages).values()) == 1
    # The Idempotency-Key of before the failover still replays after it, on either instance.
    for replay in (replay_first, replay_second):
        assert replay.status_code == 200 and replay.headers.get("Idempotent-Replayed") == "true"
        assert replay.json() == before.json()
    assert fake_provider.count() == statuses[200] + 1
    # The limit held across the failover, give or take what the docs say it may forget.
    lost_at_most = sum(1 for _, end, status, _ in answers
                       if status == 200 and killed_at - LOSS_WINDOW_S <= end <= killed_at)
    assert fake_provider.count() <= limit + lost_at_most, (fake_provider.count(), lost_at_most)
    # The check-up names the topology and the primary that serves now.
    assert check_up["storageTopology"] == {"topology": "sentinel", "service": "mymaster",
                                           "primary": f"127.0.0.1:{sentinels.replica_port}"}


def _slots_of(cluster, port: int) -> int:
    """How many hash slots the node on `port` serves, by the cluster's own map."""
    total = 0
    for start, end, primary, *_ in cluster.node(port).execute_command("CLUSTER", "SLOTS"):
        if int(primary[1]) == port:
            total += end - start + 1
    return total


def test_a_cluster_reshard_during_traffic_costs_no_error_and_no_duplicate(
        redis_cluster, redis_cluster_uri, fake_provider_server, fake_provider):
    env = {**twilio_env(fake_provider_server.url), "STORAGE_URI": redis_cluster_uri,
           "RATE_LIMIT_MAX_REQUESTS": "100000"}
    source, target = redis_cluster.ports[0], redis_cluster.ports[1]
    before = _slots_of(redis_cluster, target)
    with Service(env, workers=2) as first, Service(env, workers=2) as second:
        with Load([first, second], pause_s=0.02, keyed=True) as load:
            time.sleep(2)
            resharding_from = time.monotonic()
            output = redis_cluster.reshard(source, target, 3000).stdout
            resharding_until = time.monotonic()
            time.sleep(2)
        replays = [(first if i % 2 else second).send(payload, headers=headers)
                   for i, (payload, headers) in enumerate(load.sent[:: max(1, len(load.sent) // 30)])]
        check_up = requests.get(f"{first.url}/-/check-up", timeout=10).json()
    assert _slots_of(redis_cluster, target) == before + 3000
    statuses = Counter(status for *_, status, _ in load.answers)
    during = sum(1 for start, end, *_ in load.answers if start >= resharding_from and end <= resharding_until)
    print(f"reshard of 3000 slots: {resharding_until - resharding_from:.1f} s, {during} sends during it; "
          f"answers {dict(statuses)}; slots moved with keys: "
          f"{sum(1 for line in output.splitlines() if line.endswith('.'))}")
    assert during >= 20, "the traffic did not overlap the reshard"
    # redis-cli prints a dot for each key batch it migrates: the service's keys moved under it.
    moved_with_keys = [line for line in output.splitlines() if line.startswith("Moving slot") and line.endswith(".")]
    assert moved_with_keys, "no slot that moved held a key of the service"
    assert statuses == Counter({200: len(load.answers)}), statuses  # not one error
    # One SMS per send, none twice, and each key still replays wherever its slot went.
    assert fake_provider.count() == len(load.answers)
    assert max(Counter(m["To"] for m in fake_provider.messages).values()) == 1
    assert all(r.status_code == 200 and r.headers.get("Idempotent-Replayed") == "true" for r in replays)
    assert fake_provider.count() == len(load.answers)
    assert check_up["storageTopology"]["topology"] == "cluster"
    assert sorted(check_up["storageTopology"]["primaries"]) == sorted(
        f"127.0.0.1:{port}" for port in redis_cluster.ports)

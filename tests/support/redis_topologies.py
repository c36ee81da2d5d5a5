"""Redis beyond one node, as plain processes on loopback: a 3-primary Cluster, and a primary
with a replica watched by three Sentinels. Both require a password, so the tests also show
that it reaches every node (and every Sentinel)."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from support.ports import wait_for_port

PASSWORD = "topology-pw-0123"
SERVICE = "mymaster"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int, bus: bool = False) -> list[int]:
    """`count` free ports (and each one's cluster bus port, +10000, when `bus`)."""
    found: list[int] = []
    while len(found) < count:
        port = random.randint(20000, 29999)
        if port not in found and _free(port) and (not bus or _free(port + 10000)):
            found.append(port)
    return found


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed")
    return path


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{what} after {timeout} s (last error: {last})")


class _Processes:
    def __init__(self, prefix: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.processes: dict[int, subprocess.Popen] = {}

    def spawn(self, port: int, *args: str) -> None:
        log = open(self.dir / f"{port}.log", "ab")
        self.processes[port] = subprocess.Popen(
            [_binary("redis-server"), *args], stdout=log, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_for_port(port)

    def kill(self, port: int) -> None:
        """Kill one process as a crash would (SIGKILL: no goodbye to anyone)."""
        process = self.processes.pop(port)
        process.kill()
        process.wait(timeout=10)

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


def _node_args(port: int) -> list[str]:
    return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--requirepass", PASSWORD, "--masterauth", PASSWORD]


class RedisCluster(_Processes):
    """Three primaries, no replicas, every slot covered."""

    def __init__(self) -> None:
        super().__init__("sms-test-cluster-")
        self.ports = _ports(3, bus=True)

    @property
    def uri(self) -> str:
        return f"redis+cluster://:{PASSWORD}@" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> RedisCluster:
        for port in self.ports:
            self.spawn(port, *_node_args(port), "--cluster-enabled", "yes",
                       "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "2000")
        subprocess.run(
            [_binary("redis-cli"), "-a", PASSWORD, "--no-auth-warning", "--cluster", "create",
             *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60)
        _wait(lambda: all(b"cluster_state:ok" in self.node(p).execute_command("CLUSTER", "INFO") for p in self.ports),
              30, "the cluster did not reach state ok")
        return self

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=PASSWORD, socket_timeout=5)

    def flush(self) -> None:
        for port in self.ports:
            self.node(port).flushall()

    def reshard(self, source: int, target: int, slots: int) -> subprocess.CompletedProcess:
        """Move `slots` slots from the node on port `source` to the one on `target`, keys and all."""
        ids = {p: self.node(p).execute_command("CLUSTER", "MYID").decode() for p in (source, target)}
        return subprocess.run(
            [_binary("redis-cli"), "-a", PASSWORD, "--no-auth-warning", "--cluster", "reshard",
             f"127.0.0.1:{source}", "--cluster-from", ids[source], "--cluster-to", ids[target],
             "--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "10"],
            capture_output=True, text=True, timeout=300, check=True)


class RedisSentinels(_Processes):
    """A primary, one replica, three Sentinels (quorum 2), failing over within seconds."""

    def __init__(self, down_after_ms: int = 1000) -> None:
        super().__init__("sms-test-sentinel-")
        self.primary_port, self.replica_port, *self.sentinel_ports = _ports(5)
        self.down_after_ms = down_after_ms

    @property
    def uri(self) -> str:
        return (f"redis+sentinel://:{PASSWORD}@" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
                + f"/{SERVICE}")

    def start(self) -> RedisSentinels:
        self.spawn(self.primary_port, *_node_args(self.primary_port))
        self.spawn(self.replica_port, *_node_args(self.replica_port),
                   "--replicaof", "127.0.0.1", str(self.primary_port))
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text("\n".join([
                f"port {port}", "bind 127.0.0.1", f"dir {self.dir}", f"requirepass {PASSWORD}",
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary_port} 2",
                f"sentinel auth-pass {SERVICE} {PASSWORD}",
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
                f"sentinel failover-timeout {SERVICE} 10000",
                f"sentinel parallel-syncs {SERVICE} 1", ""]))
            self.spawn(port, str(conf), "--sentinel")
        _wait(lambda: self.node(self.replica_port).info("replication")["master_link_status"] == "up",
              30, "the replica did not sync")
        _wait(self._sentinels_ready, 30, "the Sentinels did not find each other and the replica")
        return self

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            sentinel = self.sentinel(port)
            master = sentinel.sentinel_master(SERVICE)
            if master["num-other-sentinels"] < 2 or master["num-slaves"] < 1:
                return False
        return True

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=PASSWORD, socket_timeout=5)

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=PASSWORD, socket_timeout=5)

    def primary(self) -> int:
        """The port every Sentinel that answers names as the primary now (0 while they disagree)."""
        seen = set()
        for port in self.sentinel_ports:
            try:
                seen.add(int(self.sentinel(port).sentinel_get_master_addr_by_name(SERVICE)[1]))
            except (redis.RedisError, OSError, TypeError):
                continue
        return seen.pop() if len(seen) == 1 else 0

    def flush(self) -> None:
        primary = self.node(self.primary())
        primary.flushall()
        primary.wait(1, 2000)


def stored_bytes(uri: str, pattern: str) -> list[bytes]:
    """The raw values (strings, and each hash's values) of the keys matching `pattern`, on
    whichever Redis topology `uri` names: what is really stored there."""
    from sms_service.storage import open_storage

    store = open_storage(uri)
    try:
        if store.topology.kind == "cluster":
            cluster = store.client.cluster()
            nodes = [cluster.get_redis_connection(node) for node in cluster.get_primaries()]
        else:
            nodes = [store.client]
        found = []
        for node in nodes:
            for key in node.keys(pattern):
                kind = node.type(key)
                found += [node.get(key)] if kind == b"string" else node.hvals(key) if kind == b"hash" else []
        return found
    finally:
        store.close()

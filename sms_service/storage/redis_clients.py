"""redis-py clients for each Redis topology: one node, Sentinel, Cluster (SPEC section 19).

Every client answers fast or not at all and never sends a command twice on its own: a
reply that timed out may hide a script that ran, and running it again would count a hit
or a streak twice. The only retries left are the ones that are known to be safe: a
Cluster's MOVED and ASK redirections (the node did not run the command) and a new
connection after a failover.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import Script
from redis.connection import Encoder
from redis.exceptions import AskError, MovedError, RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from sms_service.redis_topology import RedisTopology

# Redis must answer fast or not at all: a dead Redis may never hang a request.
REDIS_CONNECT_TIMEOUT = 0.5
REDIS_SOCKET_TIMEOUT = 0.5


def _options() -> dict[str, Any]:
    return {
        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
        "socket_timeout": REDIS_SOCKET_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 15,
    }


def connect(topology: RedisTopology) -> Any:
    """A client for `topology`; it connects on first use, so a Redis down at start-up
    fails calls (closed), not the start."""
    if topology.kind == "single":
        url = topology.url.replace("redis+unix://", "unix://", 1)
        pool = redis.ConnectionPool.from_url(url, **_options())
        return redis.Redis(connection_pool=pool)
    auth = {"username": topology.username, "password": topology.password, "ssl": topology.tls}
    if topology.kind == "sentinel":
        # Each new connection asks the Sentinels where the primary is; a connection to a
        # primary that was demoted answers READONLY and is dropped (redis-py), so the
        # next command finds the new primary with no restart.
        sentinel = Sentinel(list(topology.hosts), sentinel_kwargs={**_options(), **auth},
                            **_options(), **auth)
        return sentinel.master_for(topology.service_name, db=topology.db)
    return LazyCluster(lambda: RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in topology.hosts],
        # retry=0 (the options): connection errors and timeouts are not retried; MOVED,
        # ASK and TRYAGAIN are followed by the client itself, as they are safe.
        require_full_coverage=True,
        **_options(), **auth))


class LazyCluster:
    """A RedisCluster built on first use: its constructor reads the slot map at once.

    A cluster that cannot be reached raises `redis.ConnectionError` from the call that
    needed it, and the next call tries again.
    """

    def __init__(self, make: Callable[[], RedisCluster]) -> None:
        self._make = make
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    def get_encoder(self) -> Encoder:
        return Encoder("utf-8", "strict", False)

    def register_script(self, script: str) -> Script:
        return Script(self, script)

    def cluster(self) -> RedisCluster:
        """The cluster client; raises `redis.ConnectionError` when it cannot be built."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    try:
                        self._client = self._make()
                    except RedisClusterException as exc:
                        raise redis.ConnectionError(f"Redis Cluster unreachable: {exc}") from None
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster(), name)


def close(client: Any) -> None:
    """Close `client`'s connections, and those to its Sentinels when it has any."""
    client.close()
    proxy = getattr(getattr(client, "connection_pool", None), "proxy", None)
    if proxy is not None:
        proxy.sentinel_manager.close()


def node_client(client: Any, topology: RedisTopology, key: str) -> redis.Redis:
    """The client of the one node that holds `key`: its primary (for a pipeline + WAIT)."""
    if topology.kind != "cluster":
        return client
    cluster = client.cluster()
    return cluster.get_redis_connection(cluster.get_node_from_key(key))


def node_client_at(client: Any, redirection: AskError | MovedError, moved: bool) -> redis.Redis:
    """The client of the node a Cluster redirection names; a MOVED also updates the slot map."""
    cluster = client.cluster()
    if moved:
        cluster.nodes_manager.move_slot(redirection)
    node = cluster.get_node(host=redirection.host, port=redirection.port)
    if node is None:
        node = ClusterNode(redirection.host, redirection.port)
    return cluster.get_redis_connection(node)


def has_replicas(client: Any, topology: RedisTopology, key: str) -> bool:
    """Tell whether the primary that holds `key` has a replica connected to it now."""
    if topology.kind == "cluster":
        cluster = client.cluster()
        return len(cluster.nodes_manager.slots_cache.get(cluster.keyslot(key)) or ()) > 1
    return int(client.info("replication").get("connected_slaves", 0)) > 0


def describe(client: Any, topology: RedisTopology) -> dict[str, Any]:
    """The topology's kind and its primary (a Cluster: every primary) as seen now.

    Raises `redis.RedisError` or `OSError` when it cannot be asked.
    """
    if topology.kind == "single":
        return {"topology": "single", "primary": _address(client.connection_pool.connection_kwargs)}
    if topology.kind == "sentinel":
        host, port = client.connection_pool.get_master_address()
        return {"topology": "sentinel", "service": topology.service_name, "primary": f"{host}:{port}"}
    cluster = client.cluster()
    primaries = sorted(f"{node.host}:{node.port}" for node in cluster.get_primaries())
    return {"topology": "cluster", "primaries": primaries}


def _address(kwargs: dict[str, Any]) -> str:
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"

"""The grammar of Redis STORAGE_URIs: one node, Sentinel, or Cluster (SPEC sections 15, 19).

Read once at start-up by the configuration, and by the storage that connects to it. The
forms follow the `limits` library's, the de-facto convention:

- ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...``, ``redis+unix://...``;
- ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service_name[/db]``;
- ``redis+cluster://[[user]:password@]host:port[,host:port...]``;
- ``rediss+sentinel://`` and ``rediss+cluster://``: the same over TLS.

A password in a Sentinel URI is given to the Sentinels and to the data nodes alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

SENTINEL_PORT = 26379
REDIS_PORT = 6379

SCHEMES = {
    "redis": ("single", False), "rediss": ("single", True), "redis+unix": ("single", False),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
}


@dataclass(frozen=True)
class RedisTopology:
    """Where the Redis data lives and how to reach it.

    `kind` is ``single``, ``sentinel`` or ``cluster``; `hosts` the Sentinels or the
    cluster's start-up nodes (empty for ``single``, which keeps its `url` for redis-py).
    """

    kind: str
    url: str = field(repr=False)
    hosts: tuple[tuple[str, int], ...] = ()
    service_name: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    def describe(self) -> str:
        """A line naming the topology, never its password: for logs and check-config."""
        if self.kind == "single":
            parts = urlsplit(self.url)
            where = parts.hostname or parts.path or "?"
            port = f":{parts.port}" if parts.hostname and parts.port else ""
            return f"redis {parts.scheme}://{where}{port}"
        nodes = ",".join(f"{h}:{p}" for h, p in self.hosts)
        if self.kind == "sentinel":
            return f"redis sentinel service {self.service_name} via {nodes}"
        return f"redis cluster via {nodes}"


def is_redis_uri(text: str) -> bool:
    """Tell whether `text` names one of the Redis schemes."""
    return urlsplit(text).scheme in SCHEMES


def parse_redis_uri(text: str) -> RedisTopology:
    """Read a Redis STORAGE_URI.

    Raises `ValueError` with one line saying what is wrong (never quoting a password).
    """
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ValueError("must be a redis://, rediss://, redis+unix://, redis+sentinel:// or "
                         "redis+cluster:// URI (rediss+ for TLS)")
    kind, tls = SCHEMES[scheme]
    if kind == "single":
        if scheme != "redis+unix" and not urlsplit(text).hostname:
            raise ValueError("has no host")
        try:
            urlsplit(text).port  # noqa: B018  (raises on a port that is not a number)
        except ValueError:
            raise ValueError("has a port that is not a number between 1 and 65535") from None
        return RedisTopology("single", text, tls=tls)
    credentials, _, location = rest.rpartition("@")
    username = password = None
    if credentials:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # "secret@host": a bare word is the password, as redis-py reads it
            username, password = None, unquote(user)
    netloc, slash, path = location.partition("/")
    hosts = tuple(_host_port(part, SENTINEL_PORT if kind == "sentinel" else REDIS_PORT)
                  for part in netloc.split(",") if part.strip())
    if not hosts:
        raise ValueError(f"names no {'Sentinel' if kind == 'sentinel' else 'cluster node'}: "
                         f"{scheme}://host:port[,host:port...]")
    if "?" in path or "#" in path:
        raise ValueError("takes no query or fragment")
    segments = [s for s in path.split("/") if s] if slash else []
    if kind == "cluster":
        if segments and segments != ["0"]:
            raise ValueError("must not name a service or database: a cluster has only database 0")
        return RedisTopology("cluster", text, hosts, username=username, password=password, tls=tls)
    if not segments:
        raise ValueError(f"has no service name: {scheme}://host:port[,host:port...]/service_name[/db]")
    if len(segments) > 2:
        raise ValueError("has too many path parts: /service_name[/db]")
    db = 0
    if len(segments) == 2:
        if not (segments[1].isascii() and segments[1].isdigit()):
            raise ValueError(f"has a database that is not a whole number: {segments[1][:20]!r}")
        db = int(segments[1])
    return RedisTopology("sentinel", text, hosts, unquote(segments[0]), db, username, password, tls)


def _host_port(part: str, default_port: int) -> tuple[str, int]:
    part = part.strip()
    if part.startswith("["):  # [::1]:26379
        host, _, after = part[1:].partition("]")
        port_text = after[1:] if after.startswith(":") else (None if not after else "?")
    else:
        host, colon, port_text = part.rpartition(":")
        if not colon:
            host, port_text = part, None
    if not host:
        raise ValueError(f"has a host that cannot be read: {part[:60]!r}")
    if port_text is None:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"has a bad port {port_text[:20]!r} for host {host[:60]}: "
                         "a number between 1 and 65535")
    return host, int(port_text)

"""Pooled, deadline-bounded HTTP for provider plugins, with the only retry that is safe.

Plugins use `ProviderHTTP` so that every provider gets the same guarantees: one
connection pool per worker shared by its threads, the whole call (connect, sending,
status line, headers and body) inside one ``PROVIDER_TIMEOUT`` deadline, answers read up
to a size cap, a failure that provably sent nothing told apart from one that may have
sent an SMS, and a POST retried only when its connection was refused.
"""

from __future__ import annotations

import concurrent.futures
import email.utils
import heapq
import ipaddress
import json
import logging
import math
import os
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationParseError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
)
from urllib3.util.connection import allowed_gai_family
from urllib3.util.retry import Retry

from sms_service.exceptions import (
    ConfigError,
    MessageRejected,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
)

log = logging.getLogger(__name__)
# urllib3 writes request paths into its log lines (a retry warning, a header parsing
# warning, every request at debug), and a provider's path carries its account id, which
# for Kaleyra is a credential. It logs nothing at ERROR, so nothing of it is lost that
# our own error mapping does not say better.
logging.getLogger("urllib3").setLevel(logging.ERROR)

MAX_ANSWER_BYTES = 1 << 20
# 4xx statuses that say our request went to the wrong place or in the wrong form (a bad
# base URL, a proxy), not that the provider judged the message: they are our failure.
_MISROUTED = frozenset({404, 405, 406, 407, 408, 410, 411, 413, 414, 415, 431})
CHUNK_BYTES = 16 << 10
# A provider's Retry-After is passed on to our caller; past a day it is a provider's bug
# (or a date years ahead), and a caller told "retry in a day" tries again later anyway.
MAX_RETRY_AFTER_S = 86_400


@dataclass(frozen=True)
class ProviderAnswer:
    """A provider's HTTP answer, read whole (up to the size cap)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    provider: str = field(default="provider", repr=False)

    def json(self) -> Any:
        """Decode the body as JSON; raises `ProviderUnavailable` when it is not."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError):
            raise ProviderUnavailable(
                f"{self.provider} answered HTTP {self.status} with a body that is not JSON",
                http_status=self.status,
            ) from None

    @property
    def retry_after(self) -> int | None:
        """The ``Retry-After`` header in whole seconds, when present and readable."""
        return parse_retry_after(self.headers.get("Retry-After"))

    @property
    def request_id(self) -> str | None:
        """The provider's request id header, when it sent one."""
        for name in ("Twilio-Request-Id", "X-Request-Id", "Request-Id"):
            if self.headers.get(name):
                return self.headers[name][:100]
        return None


def base_url_setting(env: Mapping[str, str], name: str, default: str) -> str:
    """Read a provider's API root from `env` (`default` when unset or empty).

    Raises `ConfigError` naming `name` when it is not a plain http(s) URL; the value is
    never echoed, since a URL can carry credentials.
    """
    value = env.get(name) or default
    problem = f"{name} must be an http(s) URL such as {default}"
    if any(c.isspace() or not c.isprintable() for c in value):
        raise ConfigError(problem)
    try:
        parts = urllib.parse.urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        raise ConfigError(problem) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(problem)
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{name} must not contain credentials")
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ConfigError(f"{name} must not have a query or a fragment")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        log.warning(f"{name} is plain http: credentials and messages travel unencrypted")
    return value.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_retry_after(value: str | None) -> int | None:
    """Read a ``Retry-After`` value (seconds or an HTTP date) as whole seconds, 1 to a day."""
    if not value:
        return None
    value = value.strip()
    if not value.isascii():  # superscripts and other scripts' digits pass isdigit()
        return None
    if value.isdigit():
        # Length first: int() refuses 4,300+ digits, and anything past 9 is past the cap.
        digits = value.lstrip("0") or "0"
        return MAX_RETRY_AFTER_S if len(digits) > 9 else min(MAX_RETRY_AFTER_S, max(1, int(digits)))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return min(MAX_RETRY_AFTER_S, max(1, math.ceil(when.timestamp() - time.time())))


def error_for_status(
    answer: ProviderAnswer, reason: str, code: str | int | None = None
) -> ProviderError:
    """Build the exception for a failed answer from its HTTP status.

    401/403 -> `ProviderAuthError`, 429 -> `ProviderRateLimited`, a 4xx that judges the
    message (400, 409, 422, ...) -> `MessageRejected`, anything else (5xx, 3xx, a 404
    from a wrong base URL) -> `ProviderUnavailable`.
    """
    status = answer.status
    text = f"{answer.provider} error {code}: {reason}" if code else f"{answer.provider}: {reason}"
    kwargs = {"provider_code": code, "http_status": status, "request_id": answer.request_id}
    if status in (401, 403):
        return ProviderAuthError(f"{answer.provider} refused our credentials", **kwargs)
    if status == 429:
        return ProviderRateLimited(text, retry_after=answer.retry_after, **kwargs)
    if 400 <= status < 500 and status not in _MISROUTED:
        return MessageRejected(text, **kwargs)
    return ProviderUnavailable(f"{answer.provider} answered HTTP {status}", **kwargs)


class ProviderHTTP:
    """A thread-safe pooled HTTP client bound to one provider."""

    def __init__(
        self,
        provider: str,
        *,
        timeout: float,
        connect_timeout: float = 3.05,
        pool_size: int = 128,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.provider = provider
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.max_answer_bytes = max_answer_bytes
        self.session = requests.Session()
        self.session.trust_env = False  # never route provider traffic via ambient proxies or .netrc
        self.headers = {**requests.utils.default_headers(), **(headers or {})}
        self.auth = auth
        # What requests.Request.prepare() would rebuild on every call (header checks,
        # Basic auth, URL parsing and IDNA, a runtime Protocol isinstance per argument),
        # made once: a tenth of a busy worker's CPU.
        template = requests.Request("GET", "http://localhost/", headers=self.headers, auth=auth).prepare()
        self._headers = template.headers
        self._headers.pop("Content-Length", None)
        self._urls: dict[str, str] = {}
        # Only a refused connection is retried (once): the request provably never left.
        # Reads, statuses and redirects never are. (False, not 0, re-raises the original
        # error so a read timeout stays a timeout.)
        retry = _RefusedOnce(
            total=1, connect=1, read=False, status=False, other=False, redirect=False,
            allowed_methods=None, raise_on_status=False, respect_retry_after_header=False,
        )
        adapter = _WatchedAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def request(self, method: str, url: str, **kwargs: Any) -> ProviderAnswer:
        """Make one call and read its answer, all within ``timeout`` seconds from now.

        Raises `ProviderUnreachable` when no connection could be made (nothing was
        sent), `ProviderTimeout` past the deadline, and `ProviderUnavailable` when the
        connection broke after the request left or the answer cannot be read.
        """
        call = _WATCHDOG.begin(self.timeout)
        try:
            answer = self._exchange(call, method, url, kwargs)
        except ProviderError:
            # A call the watchdog cut fails however its socket happened to break; the
            # deadline is the reason. Before any connection, nothing left: keep saying so.
            if _WATCHDOG.settle(call) and call.connected:
                raise self._late() from None
            raise
        finally:
            _WATCHDOG.settle(call)
        # An answer finished as the watchdog fired may have been cut short (read to EOF).
        if call.expired:
            raise self._late()
        return answer

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    def _exchange(self, call: _Call, method: str, url: str, kwargs: dict[str, Any]) -> ProviderAnswer:
        try:
            # Prepared here and handed to send(): Session.request would merge cookies,
            # hooks and environment settings on every call, a tenth of a worker's CPU,
            # for features a provider API never uses.
            prepared = self._prepare(method, url, kwargs)
            response = self.session.send(
                prepared, timeout=(self.connect_timeout, self.timeout), stream=True, allow_redirects=False,
            )
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._failure(exc, call) from None
        try:
            body = self._read_body(response)
        finally:
            response.close()
        return ProviderAnswer(response.status_code, response.headers, body, provider=self.provider)

    def _prepare(self, method: str, url: str, kwargs: dict[str, Any]) -> requests.PreparedRequest:
        """What ``requests.Request(...).prepare()`` gives, for a form, a JSON body or neither."""
        data, payload, params = kwargs.get("data"), kwargs.get("json"), kwargs.get("params")
        if kwargs.keys() - {"data", "json", "params"} or not isinstance(data, Mapping | None) or params:
            # Per-call headers (a signature) go over the client's own.
            headers = {**self.headers, **(kwargs.pop("headers", None) or {})}
            return requests.Request(method, url, headers=headers, auth=self.auth, **kwargs).prepare()
        prepared = requests.PreparedRequest()
        prepared.method = method.upper()
        prepared.url = self._urls.get(url) or self._prepared_url(url)
        headers = self._headers.copy()
        body: bytes | str | None = None
        if not data and payload is not None:
            body = json.dumps(payload, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        elif data:
            body = urllib.parse.urlencode(data, doseq=True)  # ASCII text, as requests leaves it
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if body is not None:
            headers["Content-Length"] = str(len(body))
        elif prepared.method not in ("GET", "HEAD"):
            headers["Content-Length"] = "0"
        prepared.headers, prepared.body = headers, body
        prepared._cookies = requests.cookies.RequestsCookieJar()  # what a redirect answer's cookies go to
        return prepared

    def _prepared_url(self, url: str) -> str:
        probe = requests.PreparedRequest()
        probe.prepare_url(url, None)
        if len(self._urls) < 64:  # a plugin calls a handful of URLs, over and over
            self._urls[url] = probe.url
        return probe.url

    def _failure(self, exc: Exception, call: _Call) -> ProviderError:
        name = self.provider
        if isinstance(exc, requests.exceptions.ConnectionError) and not call.connected:
            # DNS, refusal, connect timeout, TLS handshake: no connection, so not one byte
            # of the request left and no SMS can have gone.
            if isinstance(exc, requests.exceptions.ConnectTimeout):
                return ProviderUnreachable(f"{name} did not accept a connection in time")
            return ProviderUnreachable(f"could not connect to {name}")
        if isinstance(exc, requests.exceptions.Timeout):
            return self._late()
        if isinstance(exc, requests.exceptions.ConnectionError):
            if _broken_socket(exc):
                return ProviderUnavailable(
                    f"connection to {name} was lost after the request was sent; the SMS may have gone"
                )
            return ProviderUnavailable(f"{name} answer could not be read")
        return ProviderUnavailable(f"{name} call failed ({type(exc).__name__})")

    def _late(self) -> ProviderTimeout:
        return ProviderTimeout(f"{self.provider} did not answer within {self.timeout:g} s")

    def _read_body(self, response: requests.Response) -> bytes:
        name = self.provider
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_answer_bytes:
            raise ProviderUnavailable(f"{name} answer is too large ({declared} bytes)")
        chunks: list[bytes] = []
        size = 0
        raw = response.raw
        try:
            # read1 returns whatever has arrived; the watchdog bounds the wait for it.
            while chunk := raw.read1(CHUNK_BYTES, decode_content=True):
                size += len(chunk)
                if size > self.max_answer_bytes:
                    raise ProviderUnavailable(f"{name} answer is larger than {self.max_answer_bytes} bytes")
                chunks.append(chunk)
        except (TimeoutError, urllib3.exceptions.ReadTimeoutError):
            raise self._late() from None
        except (OSError, urllib3.exceptions.HTTPError):
            raise ProviderUnavailable(f"{name} answer could not be read") from None
        # Mark the body consumed so closing the response returns the connection to the pool.
        response._content = b"".join(chunks)
        response._content_consumed = True
        return response._content


def _broken_socket(exc: BaseException) -> bool:
    # requests wraps urllib3's ProtocolError, which wraps what http.client raised: an
    # OSError (reset, closed before the status line) is a lost connection, anything else
    # (a bad status line, a header too long) an answer we could not read. requests'
    # own exceptions are OSErrors too, so they only lead the way down.
    for _ in range(4):
        if isinstance(exc, OSError) and not isinstance(exc, requests.exceptions.RequestException):
            return True
        inner = exc.args[-1] if exc.args else None
        if not isinstance(inner, BaseException):
            return False
        exc = inner
    return False


# -- the deadline of a whole call -------------------------------------------------------
#
# requests' read timeout applies to each recv(): a provider sending one byte at a time
# would never trip it. One watchdog thread per process keeps the deadline of every call in
# flight and, when one passes, shuts down that call's socket, which ends whatever the
# calling thread is blocked in (sending, waiting for the status line, reading the body).
# The calls find their connections through the urllib3 pool, which reports each
# connection it hands out (`_WatchedPool`) and each connect it makes (`_Watched`).


class _Call:
    """One call's deadline and what the watchdog and the error mapping learn of it."""

    __slots__ = ("at", "conn", "connected", "expired", "settled")

    def __init__(self, at: float) -> None:
        self.at = at
        self.conn: _Watched | None = None
        self.connected = False  # a connection was made: from then on a byte may have left
        self.expired = False
        self.settled = False

    def __lt__(self, other: _Call) -> bool:
        return self.at < other.at


class _Watchdog:
    """Shuts down the connection of any call still running at its deadline."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._start_afresh()
        # A forked worker inherits the heap and the lock but not the thread.
        os.register_at_fork(after_in_child=self._start_afresh)

    def _start_afresh(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[_Call] = []
        self._thread: threading.Thread | None = None
        self._local.call = None

    def begin(self, seconds: float) -> _Call:
        """Start the calling thread's call, due `seconds` from now."""
        call = _Call(time.monotonic() + seconds)
        with self._cond:
            heapq.heappush(self._heap, call)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, args=(self._cond, self._heap), name="provider-deadlines", daemon=True,
                )
                self._thread.start()
            elif self._heap[0] is call:
                self._cond.notify()
        self._local.call = call
        return call

    def current(self) -> _Call | None:
        """The calling thread's call in progress, if any."""
        return getattr(self._local, "call", None)

    def attach(self, conn: _Watched) -> None:
        """Note that the calling thread's call now uses `conn` (fresh or from the pool)."""
        call = self.current()
        if call is None:
            return
        with self._cond:
            # The owner mark keeps a late deadline of an earlier call from cutting a
            # connection that the pool has since handed to another.
            call.conn, conn.call = conn, call
            if not conn.is_closed:
                call.connected = True
            if call.expired:
                _cut(conn)

    def connected(self, conn: _Watched) -> None:
        """Note that the calling thread's call has just connected `conn`."""
        call = self.current()
        if call is None:
            return
        with self._cond:
            call.connected = True
            if call.expired:  # the deadline passed while connecting, with no socket to cut
                _cut(conn)

    def settle(self, call: _Call) -> bool:
        """End `call` (again is harmless); return whether its deadline had passed."""
        with self._cond:
            if not call.settled:
                call.settled = True
                conn, call.conn = call.conn, None
                if call.expired and conn is not None and conn.call is call:
                    conn.close()  # a cut connection never goes back to the pool alive
        self._local.call = None
        return call.expired

    @staticmethod
    def _run(cond: threading.Condition, heap: list[_Call]) -> None:
        with cond:
            while True:
                # Settled calls are left in the heap and dropped here, so that ending a
                # call costs no heap surgery.
                while heap and heap[0].settled:
                    heapq.heappop(heap)
                if not heap:
                    cond.wait()
                    continue
                left = heap[0].at - time.monotonic()
                if left > 0:
                    cond.wait(left)
                    continue
                call = heapq.heappop(heap)
                call.expired = True
                if call.conn is not None and call.conn.call is call:
                    _cut(call.conn)


def _cut(conn: _Watched) -> None:
    sock = conn.sock
    if isinstance(sock, socket.socket):
        try:
            # socket.socket's own shutdown: an SSLSocket's would also drop its TLS state
            # under the thread that is using it.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass


_WATCHDOG = _Watchdog()


class _Watched:
    """urllib3 connection mixin: the connect fits in the call's deadline and is reported."""

    call: _Call | None = None
    # The attributes of the urllib3 connection this is mixed into.
    sock: socket.socket | None
    timeout: Any
    host: str
    port: int
    _dns_host: str
    source_address: tuple[str, int] | None
    socket_options: Any
    is_closed: bool

    def _new_conn(self) -> socket.socket:
        call = _WATCHDOG.current()
        if call is None:  # outside a ProviderHTTP call: urllib3's own connect
            return super()._new_conn()  # type: ignore[misc]
        # The socket exists only once connected, so the watchdog cannot cut a lookup or
        # a connect short: both end with the deadline on their own.
        return _connect_in_time(self, call.at)  # type: ignore[arg-type]

    def connect(self) -> None:
        try:
            super().connect()  # type: ignore[misc]
        except TimeoutError as exc:
            # Only a TLS handshake gets here (urllib3 wraps a TCP connect timeout itself);
            # urllib3 would call it a read timeout, yet no byte of the request has left.
            raise ConnectTimeoutError(self, f"TLS handshake with {self.host} timed out") from exc
        _WATCHDOG.connected(self)


# -- connecting within the deadline -----------------------------------------------------
#
# urllib3's create_connection looks the name up with no bound at all, then gives every
# address it finds the full connect timeout: N silent addresses took N deadlines. Here a
# new connection looks its name up on a short-lived daemon thread, waited for only until
# the deadline, and tries the addresses in order, each with the time still left. A call
# on a pooled keep-alive connection does none of this. Nothing is cached: the resolver
# (nscd, systemd-resolved, the OS) keeps the TTLs, and a new connection is rare.

# Lookups running at once at most, per process: a resolver that hangs ties up this many
# threads (each until the system resolver gives up), never one per call.
MAX_LOOKUPS = 16


class _Resolver:
    """``getaddrinfo`` waited for only until a deadline."""

    def __init__(self, most: int) -> None:
        self._most = most
        self._start_afresh()
        # A forked worker inherits the count of its parent's lookups but not their threads.
        os.register_at_fork(after_in_child=self._start_afresh)

    def _start_afresh(self) -> None:
        self._slots = threading.BoundedSemaphore(self._most)

    def lookup(self, host: str, port: int, family: int, timeout: float) -> list[Any]:
        """The addresses of `host`, as ``socket.getaddrinfo`` gives them, within `timeout` s.

        Raises `TimeoutError` past it (the lookup runs on, its answer unused) and what
        ``getaddrinfo`` raises.
        """
        started = time.monotonic()
        slots = self._slots
        if not slots.acquire(timeout=max(0.0, timeout)):
            raise TimeoutError("every name lookup slot is taken")
        job: concurrent.futures.Future[list[Any]] = concurrent.futures.Future()

        def run() -> None:
            try:
                job.set_result(socket.getaddrinfo(host, port, family, socket.SOCK_STREAM))
            except BaseException as exc:  # handed to the caller, who maps it
                job.set_exception(exc)
            finally:
                slots.release()

        try:
            # A thread per lookup, not a pool: only a new connection to a name gets
            # here, and a fresh daemon thread survives neither a fork nor exit.
            threading.Thread(target=run, name="provider-dns", daemon=True).start()
        except BaseException:
            slots.release()
            raise
        try:
            return job.result(max(0.0, timeout - (time.monotonic() - started)))
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"no answer for {host} in time") from None


_RESOLVER = _Resolver(MAX_LOOKUPS)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _connect_in_time(conn: HTTPConnection, deadline: float) -> socket.socket:
    """Open `conn`'s socket before the monotonic `deadline`: urllib3's exceptions, its socket options.

    Raises `ConnectTimeoutError` when the lookup or the connects run past the deadline,
    `NameResolutionError` when the name has no address, and `NewConnectionError` (from
    the last address's error: a refusal stays one, for the retry) otherwise.
    """
    host = conn._dns_host.strip("[]")
    try:
        host.encode("idna")
    except UnicodeError:
        raise LocationParseError(f"'{host}', label empty or too long") from None
    left = deadline - time.monotonic()
    if left <= 0:
        raise ConnectTimeoutError(conn, f"no time left to connect to {conn.host}")
    family = allowed_gai_family()
    try:
        if _is_ip_literal(host):  # no lookup to wait for: no thread
            addresses = socket.getaddrinfo(host, conn.port, family, socket.SOCK_STREAM)
        else:
            addresses = _RESOLVER.lookup(host, conn.port, family, left)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    except TimeoutError:
        raise ConnectTimeoutError(conn, f"looking up {conn.host} took past the deadline") from None
    # urllib3's connect timeout (per address, as urllib3 gives it) within the deadline.
    per_address = conn.timeout if isinstance(conn.timeout, int | float) else None
    error: OSError | None = None
    for af, socktype, proto, _name, address in addresses:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock = socket.socket(af, socktype, proto)
        try:
            for option in conn.socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(left if per_address is None else min(per_address, left))
            if conn.source_address:
                sock.bind(conn.source_address)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock
    if error is None and addresses:
        raise ConnectTimeoutError(conn, f"no time left to connect to {conn.host}")
    if error is None:
        error = OSError("getaddrinfo returns an empty list")
    if isinstance(error, TimeoutError) or deadline <= time.monotonic():
        raise ConnectTimeoutError(conn, f"connection to {conn.host} timed out") from error
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}") from error


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    """A plain connection whose calls keep their deadline."""


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    """A TLS connection whose calls keep their deadline."""


class _WatchedPool:
    """urllib3 pool mixin: tells the watchdog which connection the current call uses."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        _WATCHDOG.attach(conn)
        return conn


class _WatchedHTTPPool(_WatchedPool, HTTPConnectionPool):
    """The http:// pool."""

    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(_WatchedPool, HTTPSConnectionPool):
    """The https:// pool."""

    ConnectionCls = _WatchedHTTPSConnection


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter on the watched pools."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        # An instance attribute: the module-level default is shared by every PoolManager.
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _RefusedOnce(Retry):
    """urllib3 retries that try a connection again only when it was refused, within the deadline.

    A refusal is the one connect failure that proves nothing is left to wait for; a
    connect timeout retried would double the connect phase.
    """

    def increment(  # type: ignore[override]
        self, method: str | None = None, url: str | None = None, response: Any = None,
        error: Exception | None = None, _pool: Any = None, _stacktrace: Any = None,
    ) -> Retry:
        if error is not None and self._is_connection_error(error) and not _refused_in_time(error):
            raise MaxRetryError(_pool, url, error) from error
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _refused_in_time(error: Exception) -> bool:
    refused = isinstance(error, NewConnectionError) and isinstance(error.__cause__, ConnectionRefusedError)
    call = _WATCHDOG.current()
    return refused and (call is None or call.at > time.monotonic())

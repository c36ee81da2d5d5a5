"""Pooled, deadline-bounded HTTP for provider plugins, with the only retry that is safe.

Plugins use `ProviderHTTP` so that every provider gets the same guarantees: one
connection pool per worker shared by its threads, the whole call (connect, headers and
body) bounded by ``PROVIDER_TIMEOUT``, answers read up to a size cap, and a POST retried
only when the connection was never established (so the request provably never left).
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import logging
import math
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from sms_service.exceptions import (
    ConfigError,
    MessageRejected,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)

log = logging.getLogger(__name__)

MAX_ANSWER_BYTES = 1 << 20
# 4xx statuses that say our request went to the wrong place or in the wrong form (a bad
# base URL, a proxy), not that the provider judged the message: they are our failure.
_MISROUTED = frozenset({404, 405, 406, 407, 408, 410, 411, 413, 414, 415, 431})
CHUNK_BYTES = 16 << 10


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
    """Read a ``Retry-After`` value (seconds or an HTTP date) as whole seconds >= 1."""
    if not value:
        return None
    value = value.strip()
    if not value.isascii():  # superscripts and other scripts' digits pass isdigit()
        return None
    if value.isdigit():
        return max(1, int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(1, math.ceil(when.timestamp() - time.time()))


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
        # Only connection errors are retried (once): the request never left, so the
        # provider cannot have sent anything. Reads, statuses and redirects never are.
        # (False, not 0, re-raises the original error so a read timeout stays a timeout.)
        retry = Retry(
            total=1, connect=1, read=False, status=False, other=False, redirect=False,
            allowed_methods=None, raise_on_status=False, respect_retry_after_header=False,
        )
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=retry)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def request(self, method: str, url: str, **kwargs: Any) -> ProviderAnswer:
        """Make one call and read its answer within the deadline.

        Raises `ProviderTimeout` past the deadline and `ProviderUnavailable` when the
        provider cannot be reached or its answer cannot be read.
        """
        deadline = time.monotonic() + self.timeout
        name = self.provider
        try:
            # Prepared here and handed to send(): Session.request would merge cookies,
            # hooks and environment settings on every call, a tenth of a worker's CPU,
            # for features a provider API never uses.
            prepared = requests.Request(method, url, headers=self.headers, auth=self.auth, **kwargs).prepare()
            response = self.session.send(
                prepared, timeout=(self.connect_timeout, self.timeout), stream=True, allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout:
            raise ProviderTimeout(f"{name} did not accept a connection in time") from None
        except requests.exceptions.ReadTimeout:
            raise ProviderTimeout(f"{name} did not answer within {self.timeout:g} s") from None
        except requests.exceptions.ConnectionError:
            raise ProviderUnavailable(f"could not connect to {name}") from None
        except requests.exceptions.RequestException as exc:
            raise ProviderUnavailable(f"{name} call failed ({type(exc).__name__})") from None
        try:
            body = self._read_body(response, deadline)
        finally:
            response.close()
        return ProviderAnswer(response.status_code, response.headers, body, provider=name)

    def _read_body(self, response: requests.Response, deadline: float) -> bytes:
        name = self.provider
        declared = response.headers.get("Content-Length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self.max_answer_bytes:
            raise ProviderUnavailable(f"{name} answer is too large ({declared} bytes)")
        chunks: list[bytes] = []
        size = 0
        raw = response.raw
        try:
            # read1 returns whatever has arrived, so the deadline is checked between
            # the pieces of a slow answer instead of once per fixed-size chunk.
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ProviderTimeout(f"{name} did not answer within {self.timeout:g} s")
                _set_read_timeout(response, remaining)
                chunk = raw.read1(CHUNK_BYTES, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.max_answer_bytes:
                    raise ProviderUnavailable(f"{name} answer is larger than {self.max_answer_bytes} bytes")
                chunks.append(chunk)
        except (TimeoutError, urllib3.exceptions.ReadTimeoutError):
            raise ProviderTimeout(f"{name} did not answer within {self.timeout:g} s") from None
        except (OSError, urllib3.exceptions.HTTPError):
            raise ProviderUnavailable(f"{name} answer could not be read") from None
        # Mark the body consumed so closing the response returns the connection to the pool.
        response._content = b"".join(chunks)
        response._content_consumed = True
        return response._content

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()


def _set_read_timeout(response: requests.Response, seconds: float) -> None:
    # requests applies one read timeout per recv(); shrinking the socket's timeout to
    # what is left of the deadline keeps a slow, dripping answer inside the bound.
    connection = getattr(response.raw, "_connection", None) or getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    current = sock.gettimeout()
    # settimeout costs system calls; skip it while the socket's own limit is still close.
    if current is None or current > seconds + 0.05:
        try:
            sock.settimeout(max(seconds, 0.001))
        except OSError:
            pass

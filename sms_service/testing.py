"""The conformance suite for provider plugins: subclass `ProviderConformance` in your tests.

Install it with ``pip install "sms-service[testing]"`` (it needs pytest); the service
itself never imports this module. A plugin's test module does::

    from sms_service.testing import Answer, ProviderConformance
    from sms_service_acme.provider import AcmeProvider

    class TestAcmeConformance(ProviderConformance):
        provider_class = AcmeProvider
        env = {"ACME_API_KEY": "test-key-0123456789"}
        secrets = ("test-key-0123456789",)
        required_variables = ("ACME_API_KEY",)
        base_url_variable = "ACME_BASE_URL"

        def send_answer(self, request):
            return Answer(200, {"id": "AC-1", "status": "queued"})

The suite drives the provider through its HTTP boundary: it points
``base_url_variable`` at a loopback server on 127.0.0.1 that plays the provider's
answers (success from `send_answer`, failures from `error_answers`), a port where
nothing listens (the "nothing sent" signal), a server that never answers (the
timeout) and raw sockets that break the exchange at each step (`TcpLoopback`: no TLS
handshake, a connection closed after the request, an answer that cannot be read). A
provider that makes no HTTP calls (``base_url_variable = None``) skips those checks.
Nothing here ever contacts a real provider.

Callback hooks build their requests with `form_request` and `json_request`, which
fill `CallbackRequest` as the service does (form values as tuples, the raw body).
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import http.server
import json
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from sms_service.exceptions import (
    CallbackRefused,
    ConfigError,
    MessageRejected,
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
)
from sms_service.provider import (
    Balance,
    CallbackRequest,
    InboundMessage,
    Message,
    Provider,
    Receipt,
    StatusUpdate,
)

__all__ = ["STATUSES", "Answer", "LoopbackProvider", "ProviderConformance", "RecordedRequest", "TcpLoopback",
           "break_the_chunks", "closed_port_url", "form_request", "hang_up", "json_request", "stay_silent"]

#: The normalised statuses a `StatusUpdate` may carry (SPEC section 10).
STATUSES = frozenset({"queued", "sent", "delivered", "undelivered", "failed"})
#: A body no log line, error message or repr may contain.
BODY = "conformance body 7f3a9c: your code is 123456"
RECEIVER = "+14155550123"
SENDER = "+15005550006"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer the loopback provider plays: `body` may be bytes, str or JSON data."""

    status: int
    body: Any = b""
    headers: Mapping[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        """The body as bytes, and the headers with a Content-Type when JSON."""
        headers = dict(self.headers)
        if isinstance(self.body, bytes):
            return self.body, headers
        if isinstance(self.body, str):
            return self.body.encode(), headers
        headers.setdefault("Content-Type", "application/json")
        return json.dumps(self.body).encode(), headers


@dataclass(frozen=True)
class RecordedRequest:
    """One request the loopback provider received (`headers` with lower-case names)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


class LoopbackProvider:
    """A threaded HTTP server on 127.0.0.1 standing in for a provider's API.

    `answer` is called with each `RecordedRequest` and returns an `Answer`; with
    ``hang=True`` the server reads each request and never answers (until closed).
    Use it as a context manager; `url` is its base URL, `requests` what it received.
    """

    def __init__(self, answer: Any = None, *, hang: bool = False) -> None:
        self.answer = answer
        self.hang = hang
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body leave in two writes: without TCP_NODELAY the body waits for the
            # client's delayed ACK, 40 ms a request on Linux.
            disable_nagle_algorithm = True

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = RecordedRequest(self.command, self.path,
                                          {k.lower(): v for k, v in self.headers.items()}, body)
                with owner._lock:
                    owner.requests.append(request)
                if owner.hang:
                    owner._stop.wait(30)
                    self.close_connection = True
                    return
                answer = owner.answer(request) if owner.answer else Answer(500, b"no answer set")
                data, headers = answer.encoded()
                self.send_response(answer.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 256  # many threads connect at once
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="loopback-provider")

    def __enter__(self) -> LoopbackProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class TcpLoopback:
    """A raw TCP server on 127.0.0.1 that breaks an exchange where an HTTP server cannot.

    Each connection's request is read whole (`requests` counts them), then `script(conn)`
    plays the answer (`hang_up`, `stay_silent`, `break_the_chunks` or your own). With no
    script nothing listens, so connections are refused. A client speaking TLS to it
    never finishes its handshake: no request is counted. Use it as a context manager;
    `url` is its http root, `port` its port.
    """

    def __init__(self, script: Callable[[socket.socket], None] | None) -> None:
        self.script = script
        self.requests = 0
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        if script is None:
            self._sock.close()
            return
        self._sock.listen(64)
        threading.Thread(target=self._serve, daemon=True, name="tcp-loopback").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> TcpLoopback:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length and (chunk := conn.recv(65536)):
                    body += chunk
                self.requests += 1
                assert self.script is not None
                self.script(conn)
            except OSError:
                pass


def hang_up(conn: socket.socket) -> None:
    """Read the request, then close without a word (the SMS may have gone)."""


def stay_silent(conn: socket.socket) -> None:
    """Read the request, then say nothing for longer than any test's timeout."""
    time.sleep(3)


def break_the_chunks(conn: socket.socket) -> None:
    """Start a chunked 200 answer, then send a chunk that is not one."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"sid\r\nzz\r\n")


def form_request(url: str, fields: Mapping[str, str | Sequence[str]],
                 headers: Mapping[str, str] | None = None) -> CallbackRequest:
    """A form-encoded callback to `url` as the service hands it to a plugin.

    `fields` maps each name to a value or a list of values; `headers` (lower-case
    names) get the form's Content-Type.
    """
    form = {name: (value,) if isinstance(value, str) else tuple(value) for name, value in fields.items()}
    body = urllib.parse.urlencode([(name, value) for name, values in form.items() for value in values])
    headers = {"content-type": "application/x-www-form-urlencoded", **(headers or {})}
    return CallbackRequest(url=url, headers=headers, body=body.encode(), form=form)


def json_request(url: str, data: Any, headers: Mapping[str, str] | None = None,
                 body: bytes | None = None) -> CallbackRequest:
    """A JSON callback to `url` as the service hands it to a plugin; `body` is the raw body when given."""
    raw = json.dumps(data).encode() if body is None else body
    return CallbackRequest(url=url, headers={"content-type": "application/json", **(headers or {})},
                           body=raw, json=data)


class ProviderConformance:
    """The plugin contract as tests; subclass it as ``Test<Name>Conformance`` and fill in.

    Attributes to set: `provider_class`, `env` (a valid configuration with fake
    secrets), `secrets` (values that must never show), `required_variables`,
    `invalid_values` (variable -> a wrong value it must refuse), `base_url_variable`.
    Hooks to write: `send_answer` (and `balance_answer` with balance support,
    `status_callback`/`forged_status_callback` with status support). Override a check
    only with a reason: each one is part of SPEC sections 7, 10, 12 and 13.
    """

    provider_class: ClassVar[type[Provider]]
    env: ClassVar[Mapping[str, str]] = {}
    secrets: ClassVar[tuple[str, ...]] = ()
    required_variables: ClassVar[tuple[str, ...]] = ()
    invalid_values: ClassVar[Mapping[str, str]] = {}
    #: The variable that moves the provider's API root (``<NAME>_BASE_URL``); None for a
    #: provider that makes no HTTP calls.
    base_url_variable: ClassVar[str | None] = None
    #: The callback URL the provider is built with when it supports status callbacks.
    callback_url: ClassVar[str] = "https://sms.example.com/callbacks/conformance/status"
    timeout: ClassVar[float] = 5.0
    threads: ClassVar[int] = 16
    sends_per_thread: ClassVar[int] = 4

    # -- hooks ----------------------------------------------------------------------

    def send_answer(self, request: RecordedRequest) -> Answer:
        """The provider's answer to an accepted send (required with `base_url_variable`)."""
        raise NotImplementedError("write send_answer(request) -> Answer for your provider's success")

    def error_answers(self) -> dict[str, tuple[Answer, type[ProviderError]]]:
        """Failed answers to a send and the error each must raise; override to use your API's bodies."""
        body = {"code": "E42", "message": "the conformance suite refuses this"}
        return {
            "rejected": (Answer(400, body), MessageRejected),
            "throttled": (Answer(429, body, {"Retry-After": "7"}), ProviderRateLimited),
            "auth": (Answer(401, body), ProviderAuthError),
            "server_error": (Answer(503, body), ProviderUnavailable),
            "unreadable": (Answer(200, b"<html>surely not JSON</html>", {"Content-Type": "text/html"}),
                           ProviderUnavailable),
        }

    def balance_answer(self, request: RecordedRequest) -> Answer:
        """The provider's answer to a balance request (required with balance support)."""
        raise NotImplementedError("write balance_answer(request) -> Answer for your provider's balance")

    def status_callback(self, provider: Provider, sid: str) -> CallbackRequest:
        """An authentic callback saying message `sid` was delivered (status support)."""
        raise NotImplementedError("write status_callback(provider, sid) -> CallbackRequest")

    def forged_status_callback(self, provider: Provider, sid: str) -> CallbackRequest | None:
        """A callback the provider must refuse with CallbackRefused (None: it cannot sign)."""
        return None

    def inbound_post(self, provider: Provider, sender: str, body: str) -> CallbackRequest:
        """An authentic inbound post: `sender` sent `body` (inbound support)."""
        raise NotImplementedError("write inbound_post(provider, sender, body) -> CallbackRequest")

    def forged_inbound_post(self, provider: Provider, sender: str, body: str) -> CallbackRequest | None:
        """An inbound post the provider must refuse with CallbackRefused (None: it cannot sign)."""
        return None

    def make_message(self, **changes: Any) -> Message:
        """The message every check sends."""
        fields = {"sender": SENDER, "receiver": RECEIVER, "body": BODY, "num_segments": 1,
                  "encoding": "GSM-7"}
        return Message(**{**fields, **changes})

    # -- helpers --------------------------------------------------------------------

    def build(self, env: Mapping[str, str] | None = None, *, base_url: str | None = None,
              timeout: float | None = None) -> Provider:
        """Build the provider as the service does (with the callback URL when it has status support)."""
        env = dict(self.env if env is None else env)
        if base_url is not None and self.base_url_variable:
            env[self.base_url_variable] = base_url
        extra = {"callback_url": self.callback_url} if self.provider_class.supports_status() else {}
        return self.provider_class(env, timeout=self.timeout if timeout is None else timeout, **extra)

    def _needs_http(self) -> None:
        if not self.base_url_variable:
            pytest.skip("the provider makes no HTTP calls (base_url_variable is None)")

    def _assert_quiet(self, provider: Provider, texts: list[str], caplog: Any) -> None:
        shown = [repr(provider), *texts, *(r.getMessage() for r in caplog.records),
                 *(repr(r.__dict__) for r in caplog.records)]
        for text in shown:
            assert BODY not in text, f"the message body leaked: {text!r}"
            for secret in self.secrets:
                assert secret not in text, f"a secret leaked: {text!r}"

    def _check_receipt(self, receipt: Any) -> None:
        assert isinstance(receipt, Receipt), f"send must return a Receipt, not {receipt!r}"
        assert isinstance(receipt.sid, str) and receipt.sid.strip(), "the receipt needs a non-empty sid"
        assert isinstance(receipt.status, str) and receipt.status, "the receipt needs a status"
        assert isinstance(receipt.date_event, dt.datetime), "date_event must be a datetime"
        assert receipt.date_event.tzinfo is not None and receipt.date_event.utcoffset() is not None, \
            "date_event must be timezone-aware"
        assert receipt.num_segments is None or (
            isinstance(receipt.num_segments, int) and not isinstance(receipt.num_segments, bool)
            and receipt.num_segments >= 0), "num_segments is None or a count"

    def _send(self, provider: Provider, message: Message | None = None) -> Receipt:
        return provider.send(message or self.make_message())

    # -- the checks -----------------------------------------------------------------

    def test_is_a_provider(self) -> None:
        assert isinstance(self.provider_class, type) and issubclass(self.provider_class, Provider)

    def test_send_returns_a_receipt(self, caplog: Any) -> None:
        caplog.set_level(logging.DEBUG)
        if not self.base_url_variable:
            provider = self.build()
            try:
                receipt = self._send(provider)
            finally:
                provider.close()
        else:
            with LoopbackProvider(self.send_answer) as server:
                provider = self.build(base_url=server.url)
                try:
                    receipt = self._send(provider)
                finally:
                    provider.close()
            assert len(server.requests) == 1, "one send is exactly one request"
        self._check_receipt(receipt)
        self._assert_quiet(provider, [repr(receipt)], caplog)

    @pytest.mark.parametrize("kind", ["rejected", "throttled", "auth", "server_error", "unreadable"])
    def test_error_mapping(self, kind: str, caplog: Any) -> None:
        self._needs_http()
        caplog.set_level(logging.DEBUG)
        answers = self.error_answers()
        if kind not in answers:
            pytest.skip(f"{kind} is not in error_answers()")
        answer, expected = answers[kind]
        with LoopbackProvider(lambda request: answer) as server:
            provider = self.build(base_url=server.url)
            try:
                with pytest.raises(ProviderError) as caught:
                    self._send(provider)
            finally:
                provider.close()
        error = caught.value
        assert isinstance(error, expected), f"{kind}: expected {expected.__name__}, got {error!r}"
        # An answer came back, so the request left: this is never the "nothing sent" signal.
        assert not isinstance(error, ProviderUnreachable), f"{kind} must not claim nothing was sent"
        if kind in ("server_error", "unreadable"):
            # Failover would send the SMS again through the next provider.
            assert not error.nothing_sent, f"{kind}: an answer that may hide a sent SMS is never nothing_sent"
        assert len(server.requests) == 1, f"{kind}: a failed send must never be repeated"
        assert isinstance(error.message, str) and error.message.strip()
        if kind == "throttled":
            assert error.retry_after == int(answer.headers["Retry-After"]), "Retry-After must be kept"
        self._assert_quiet(provider, [error.message, str(error), repr(error)], caplog)

    def test_timeout(self, caplog: Any) -> None:
        self._needs_http()
        caplog.set_level(logging.DEBUG)
        with LoopbackProvider(hang=True) as server:
            provider = self.build(base_url=server.url, timeout=0.5)
            started = time.monotonic()
            try:
                with pytest.raises(ProviderTimeout) as caught:
                    self._send(provider)
            finally:
                provider.close()
            took = time.monotonic() - started
        assert took < 3, f"PROVIDER_TIMEOUT 0.5 s was not kept: the send took {took:.1f} s"
        self._assert_quiet(provider, [caught.value.message], caplog)

    def test_unreachable_says_nothing_was_sent(self, caplog: Any) -> None:
        self._needs_http()
        caplog.set_level(logging.DEBUG)
        provider = self.build(base_url=closed_port_url(), timeout=2)
        try:
            with pytest.raises(ProviderUnreachable) as caught:
                self._send(provider)
        finally:
            provider.close()
        assert caught.value.nothing_sent, "the failover signal: ProviderUnreachable.nothing_sent stays True"
        self._assert_quiet(provider, [caught.value.message], caplog)

    @pytest.mark.parametrize(("script", "scheme", "expected", "requests_seen"), [
        (hang_up, "https", ProviderUnreachable, 0),  # the TLS handshake never completes
        (hang_up, "http", ProviderUnavailable, 1),  # closed after the request: it may have gone
        (stay_silent, "http", ProviderTimeout, 1),
        (break_the_chunks, "http", ProviderUnavailable, 1),
    ], ids=["no-tls-handshake", "closed-after-the-request", "silent", "broken-answer"])
    def test_transport_failures(self, script: Callable[[socket.socket], None], scheme: str,
                                expected: type[ProviderError], requests_seen: int, caplog: Any) -> None:
        self._needs_http()
        caplog.set_level(logging.DEBUG)
        # Real sockets: these failures come from the HTTP stack and the kernel, which a
        # mocked transport never runs.
        with TcpLoopback(script) as server:
            provider = self.build(base_url=f"{scheme}://127.0.0.1:{server.port}", timeout=0.5)
            try:
                with pytest.raises(ProviderError) as caught:
                    self._send(provider)
            finally:
                provider.close()
        error = caught.value
        assert type(error) is expected, f"expected {expected.__name__}, got {error!r}"
        # Only a request that never left proves nothing was sent (failover, SPEC section 13).
        assert error.nothing_sent is (requests_seen == 0), f"{error!r}: nothing_sent is wrong"
        assert server.requests == requests_seen, "a failed send must never be repeated"
        self._assert_quiet(provider, [error.message, repr(error)], caplog)

    def test_concurrent_sends(self) -> None:
        total = self.threads * self.sends_per_thread
        if self.base_url_variable:
            server = LoopbackProvider(self.send_answer)
            server.__enter__()
            provider = self.build(base_url=server.url)
        else:
            server = None
            provider = self.build()
        start = threading.Barrier(self.threads)

        def work(_: int) -> list[Receipt]:
            start.wait(timeout=30)
            return [self._send(provider) for _ in range(self.sends_per_thread)]

        try:
            with concurrent.futures.ThreadPoolExecutor(self.threads) as pool:
                receipts = [r for batch in pool.map(work, range(self.threads)) for r in batch]
        finally:
            provider.close()
            if server is not None:
                server.__exit__(None, None, None)
        assert len(receipts) == total
        for receipt in receipts:
            self._check_receipt(receipt)
        if server is not None:
            assert len(server.requests) == total, "each send is exactly one request"

    def test_close_twice(self) -> None:
        provider = self.build(base_url=closed_port_url())
        provider.close()
        provider.close()

    @pytest.mark.parametrize("empty", [False, True], ids=["missing", "empty"])
    def test_missing_variable_is_named(self, empty: bool) -> None:
        if not self.required_variables:
            pytest.skip("no required_variables")
        for name in self.required_variables:
            env = {k: v for k, v in self.env.items() if k != name}
            if empty:
                env[name] = ""  # an empty value counts as unset
            with pytest.raises(ConfigError) as caught:
                self.build(env)
            assert name in caught.value.message, f"the ConfigError must name {name}: {caught.value.message!r}"
            for secret in self.secrets:
                assert secret not in caught.value.message

    def test_invalid_value_is_named(self) -> None:
        if not self.invalid_values:
            pytest.skip("no invalid_values")
        for name, value in self.invalid_values.items():
            with pytest.raises(ConfigError) as caught:
                self.build({**self.env, name: value})
            assert name in caught.value.message, f"the ConfigError must name {name}: {caught.value.message!r}"
            assert value not in caught.value.message or not value.strip(), "never echo a value"

    def test_base_url_is_checked(self) -> None:
        self._needs_http()
        with pytest.raises(ConfigError) as caught:
            self.build({**self.env, self.base_url_variable: "ftp://user:pw@example.com"})  # type: ignore[dict-item]
        assert self.base_url_variable in caught.value.message

    def test_message_repr_hides_body_and_number(self) -> None:
        text = repr(self.make_message())
        assert BODY not in text and RECEIVER not in text

    def test_balance(self) -> None:
        if not self.provider_class.supports_balance():
            pytest.skip("no balance support")
        self._needs_http()
        with LoopbackProvider(self.balance_answer) as server:
            provider = self.build(base_url=server.url)
            try:
                balance = provider.balance()
            finally:
                provider.close()
        assert isinstance(balance, Balance)
        assert isinstance(balance.amount, Decimal) and balance.amount.is_finite()
        assert isinstance(balance.currency, str)

    @pytest.mark.parametrize("kind", ["auth", "server_error", "unreadable"])
    def test_balance_errors(self, kind: str) -> None:
        if not self.provider_class.supports_balance():
            pytest.skip("no balance support")
        self._needs_http()
        answer, expected = self.error_answers()[kind]
        with LoopbackProvider(lambda request: answer) as server:
            provider = self.build(base_url=server.url)
            try:
                with pytest.raises(expected):
                    provider.balance()
            finally:
                provider.close()

    def test_status_callback(self) -> None:
        if not self.provider_class.supports_status():
            pytest.skip("no status callback support")
        provider = self.build(base_url=closed_port_url())
        try:
            sid = "conformance-sid-1"
            updates = provider.parse_status_callback(self.status_callback(provider, sid))
            assert isinstance(updates, list) and updates, "an authentic report gives updates"
            for update in updates:
                assert isinstance(update, StatusUpdate)
                assert update.status in STATUSES, f"{update.status!r} is not a normalised status"
                assert isinstance(update.provider_status, str)
            assert sid in {u.sid for u in updates}
            assert "delivered" in {u.status for u in updates}
            forged = self.forged_status_callback(provider, sid)
            if provider.callbacks_signed:
                assert forged is not None, "a provider that signs must show a forged callback is refused"
            if forged is not None:
                with pytest.raises(CallbackRefused):
                    provider.parse_status_callback(forged)
            junk = CallbackRequest(url=self.callback_url, headers={"content-type": "text/plain"},
                                   body=b"\x00 not a report")
            with pytest.raises((CallbackRefused, ValueError)):
                provider.parse_status_callback(junk)
        finally:
            provider.close()

    def test_status_callback_url_reaches_the_provider(self) -> None:
        if not self.provider_class.supports_status() or not self.base_url_variable:
            pytest.skip("no status callback support, or no HTTP calls")
        with LoopbackProvider(self.send_answer) as server:
            provider = self.build(base_url=server.url)
            try:
                self._send(provider, self.make_message(status_callback=self.callback_url))
            finally:
                provider.close()
        sent = server.requests[0]
        wire = sent.path + sent.body.decode("utf-8", "replace")
        from urllib.parse import unquote_plus

        assert self.callback_url in unquote_plus(wire).replace("\\/", "/"), \
            "the message's status_callback URL must be handed to the provider"

    def test_inbound(self, caplog: Any) -> None:
        if not self.provider_class.supports_inbound():
            pytest.skip("no inbound message support")
        caplog.set_level(logging.DEBUG)
        provider = self.build(base_url=closed_port_url())
        try:
            messages = provider.parse_inbound(self.inbound_post(provider, RECEIVER, "STOP"))
            assert isinstance(messages, list) and messages, "an authentic inbound post gives messages"
            for message in messages:
                assert isinstance(message, InboundMessage)
            assert (messages[0].sender, messages[0].body) == (RECEIVER, "STOP")
            forged = self.forged_inbound_post(provider, RECEIVER, "STOP")
            if provider.callbacks_signed:
                assert forged is not None, "a provider that signs must show a forged post is refused"
            if forged is not None:
                with pytest.raises(CallbackRefused):
                    provider.parse_inbound(forged)
            junk = CallbackRequest(url=self.callback_url, headers={"content-type": "text/plain"},
                                   body=b"\x00 not a message")
            with pytest.raises((CallbackRefused, ValueError)):
                provider.parse_inbound(junk)
            content_type, answer = provider.inbound_answer
            assert isinstance(content_type, str) and isinstance(answer, bytes)
            texts = [repr(m) for m in messages]
        finally:
            provider.close()
        shown = [*texts, *(r.getMessage() for r in caplog.records)]
        assert not any(RECEIVER in text for text in shown), "an inbound sender must be masked"

"""ProviderHTTP against real loopback sockets: deadline, size cap, the one safe retry."""

import socket
import threading
import time

import pytest
from support.ports import free_port

from sms_service.exceptions import (
    MessageRejected,
    ProviderAuthError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
)
from sms_service.provider_http import ProviderAnswer, ProviderHTTP, error_for_status, parse_retry_after


class RawServer:
    """Accepts connections and plays a scripted answer; counts requests received."""

    def __init__(self, script):
        self.script = script
        self.requests = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            self.requests += 1
            try:
                self.script(conn)
            except OSError:
                pass

    def close(self):
        self.sock.close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/x"


def _answer(body=b'{"ok": true}', status="200 OK"):
    def script(conn):
        conn.sendall(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return script


def test_reads_an_answer():
    server = RawServer(_answer())
    try:
        answer = ProviderHTTP("fake", timeout=5).request("POST", server.url, data={"a": "b"})
        assert (answer.status, answer.json()) == (200, {"ok": True})
    finally:
        server.close()


def test_connection_refused_is_unavailable_and_fast():
    http = ProviderHTTP("fake", timeout=5)
    started = time.monotonic()
    with pytest.raises(ProviderUnreachable, match="could not connect"):
        http.request("POST", f"http://127.0.0.1:{free_port()}/x", data={"a": "b"})
    assert time.monotonic() - started < 3


def test_silent_provider_times_out_within_the_deadline_and_is_not_retried():
    server = RawServer(lambda conn: time.sleep(3))
    try:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            ProviderHTTP("fake", timeout=0.5).request("POST", server.url, data={"a": "b"})
        assert time.monotonic() - started < 1.5
        time.sleep(0.2)
        assert server.requests == 1
    finally:
        server.close()


def test_dripping_body_is_bounded_by_the_whole_call_deadline():
    def drip(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            conn.sendall(b" ")
            time.sleep(0.2)

    server = RawServer(drip)
    try:
        started = time.monotonic()
        with pytest.raises(ProviderTimeout):
            ProviderHTTP("fake", timeout=1).request("POST", server.url, data={"a": "b"})
        assert time.monotonic() - started < 1.8  # each read alone would never time out
    finally:
        server.close()


def test_huge_answer_is_cut_off():
    def huge(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        for _ in range(100):
            conn.sendall(b"x" * 65536)

    server = RawServer(huge)
    try:
        with pytest.raises(ProviderUnavailable, match="larger than"):
            ProviderHTTP("fake", timeout=5).request("POST", server.url, data={"a": "b"})
    finally:
        server.close()


def test_declared_huge_answer_is_refused_before_reading():
    def declared(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n")

    server = RawServer(declared)
    try:
        with pytest.raises(ProviderUnavailable, match="too large"):
            ProviderHTTP("fake", timeout=5).request("POST", server.url, data={"a": "b"})
    finally:
        server.close()


def test_connection_dropped_mid_answer_is_unavailable_and_not_retried():
    def drop(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"partial")

    server = RawServer(drop)
    try:
        with pytest.raises(ProviderUnavailable):
            ProviderHTTP("fake", timeout=5).request("POST", server.url, data={"a": "b"})
        assert server.requests == 1
    finally:
        server.close()


def test_pool_reuses_connections():
    connections = []

    class Counting(RawServer):
        def _handle(self, conn):
            connections.append(conn)
            with conn:
                conn.settimeout(5)
                buffer = b""
                while True:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                    while b"\r\n\r\n" in buffer:
                        head, buffer = buffer.split(b"\r\n\r\n", 1)
                        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                       if line.lower().startswith(b"content-length")), 0)
                        buffer = buffer[length:]
                        self.requests += 1
                        _answer()(conn)

    server = Counting(None)
    try:
        http = ProviderHTTP("fake", timeout=5)
        for _ in range(5):
            assert http.request("POST", server.url, data={"a": "b"}).status == 200
        assert server.requests == 5 and len(connections) == 1
    finally:
        server.close()


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, MessageRejected), (409, MessageRejected), (422, MessageRejected), (401, ProviderAuthError),
     (403, ProviderAuthError), (429, ProviderRateLimited), (404, ProviderUnavailable),
     (405, ProviderUnavailable), (500, ProviderUnavailable), (502, ProviderUnavailable),
     (302, ProviderUnavailable)],
)
def test_error_for_status(status, cls):
    error = error_for_status(ProviderAnswer(status, {"Retry-After": "3"}, b"", provider="p"), "why", 42)
    assert type(error) is cls
    assert error.http_status == status
    if cls is ProviderRateLimited:
        assert error.retry_after == 3


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, None), ("", None), ("5", 5), ("0", 1), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 1),
     (" 7 ", 7), ("\u00b2", None), ("1\u00b9", None), ("\u0661\u0662", None), ("\uff15", None),
     ("Wed, 21 Oct 2015 07:28:0\u00b2 GMT", None), ("Wed, 21 Oct \u0662\u0660\u0661\u0665 07:28:00 GMT", None),
     ("Mon, 01 Jan 0001 00:00:00 +2359", 1), ("-5", None)],
)
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize(
    "value", ["Fri, 31 Dec 9999 23:59:59 -2359", "86401", "9" * 10, "9" * 5000, "0" * 20 + "86401"]
)
def test_a_retry_after_past_a_day_is_read_as_a_day(value):
    assert parse_retry_after(value) == 86_400


def test_a_retry_after_of_a_day_or_less_is_kept():
    assert parse_retry_after("86400") == 86_400
    assert parse_retry_after("0" * 5000 + "5") == 5


@pytest.mark.parametrize("header", ["Content-Length", "Retry-After"])
@pytest.mark.parametrize("value", [b"\xb2", b"1\xb9", b"\xb3\xb3"])
def test_latin_1_superscript_digits_in_headers_are_not_numbers(header, value):
    # http.client decodes headers as latin-1, whose superscripts pass str.isdigit().
    def script(conn):
        conn.sendall(b"HTTP/1.1 429 Too Many\r\nContent-Type: application/json\r\n" + header.encode()
                     + b": " + value + b"\r\nConnection: close\r\n\r\n{}")

    server = RawServer(script)
    try:
        # GET, no body: RawServer reads only the head, and closing on an unread body
        # would reset the connection.
        answer = ProviderHTTP("fake", timeout=5).request("GET", server.url)
    finally:
        server.close()
    assert answer.status == 429 and answer.retry_after is None
    assert error_for_status(answer, "slow down").retry_after is None

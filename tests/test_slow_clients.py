"""Slow, idle and lingering clients cannot hold a worker: requests have deadlines and probes keep answering."""

import http.client
import json
import select
import socket
import threading
import time

import pytest
import requests
from support.payloads import message
from support.service import SERVE_COMMAND, Service

pytestmark = pytest.mark.e2e

THREADS = 4
HEAD_TIMEOUT, BODY_TIMEOUT = 2, 3  # seconds: short, so that the tests are
# Generous: a loaded 2-core machine may be slow to schedule anything. Without the
# deadlines, the probes below would wait forever (or 2 s per client that never closes).
SLACK = 5
ENV = {"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://", "RATE_LIMIT_MAX_REQUESTS": "1000",
       "HTTP_HEADER_TIMEOUT": str(HEAD_TIMEOUT), "HTTP_BODY_TIMEOUT": str(BODY_TIMEOUT)}
JSON_POST = b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def service():
    with Service(ENV, command=[*SERVE_COMMAND, "--threads", str(THREADS)]) as running:
        yield running


class Trickler:
    """A client that sends `start`, then one byte of `drip` every `interval` seconds until it is answered."""

    def __init__(self, port: int, start: bytes, drip: bytes = b"", interval: float = 0.5) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=HEAD_TIMEOUT + BODY_TIMEOUT + SLACK)
        self.sock.sendall(start)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._drip, args=(drip, interval), daemon=True)
        self.thread.start()

    def _drip(self, drip: bytes, interval: float) -> None:
        answered = select.poll()
        answered.register(self.sock, select.POLLIN)
        while drip and not self.stopped.wait(interval):
            if answered.poll(0):
                return  # answered or closed: a reset would lose the answer
            try:
                self.sock.send(drip)
            except OSError:
                return

    def answer(self) -> bytes:
        """Everything the server sends until it closes the connection."""
        received = b""
        while chunk := self.sock.recv(65536):
            received += chunk
        return received

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.sock.close()


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split(" ")[1]), headers, rest[: int(headers["content-length"])]


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.5)
    try:
        return sock.recv(100) == b""
    except TimeoutError:
        return False


def timed_healthz(service: Service, within: float) -> float:
    started = time.monotonic()
    assert requests.get(f"{service.url}/-/healthz", timeout=within).status_code == 200
    return time.monotonic() - started


def test_clients_trickling_their_request_heads_get_408_and_the_probes_answer_again(service):
    starts = [b"GET /-/heal", b"POST /send HTTP/1.1\r\nHost: x\r\nX-Slow: "] * (THREADS // 2)
    attackers = [Trickler(service.port, start, b"z") for start in starts]
    try:
        time.sleep(0.5)  # every thread of the worker holds one of them
        assert timed_healthz(service, HEAD_TIMEOUT + SLACK) < HEAD_TIMEOUT + SLACK
        for attacker in attackers:
            status, headers, body = split_response(attacker.answer())
            assert status == 408 and headers["connection"] == "close" and headers["x-request-id"]
            assert json.loads(body) == {"statusCode": "408", "error": "Request Timeout",
                                        "message": f"the request headers did not arrive within {HEAD_TIMEOUT} s"}
    finally:
        for attacker in attackers:
            attacker.close()
    assert service.send(message()).status_code == 200
    refusals = [r for r in service.log_records() if r["message"].startswith("request refused: the request headers")]
    assert len(refusals) == THREADS and {r["status"] for r in refusals} == {408}


def test_clients_trickling_their_bodies_get_408_and_the_probes_answer_again(service):
    start = JSON_POST + b"Content-Length: 200\r\n\r\n"
    attackers = [Trickler(service.port, start, b" ") for _ in range(THREADS)]
    try:
        time.sleep(0.5)
        assert timed_healthz(service, BODY_TIMEOUT + SLACK) < BODY_TIMEOUT + SLACK
        for attacker in attackers:
            status, headers, body = split_response(attacker.answer())
            assert status == 408 and headers["connection"] == "close" and headers["x-request-id"]
            assert json.loads(body) == {"statusCode": "408", "error": "Request Timeout",
                                        "message": f"the request body did not arrive within {BODY_TIMEOUT} s"}
    finally:
        for attacker in attackers:
            attacker.close()
    assert service.send(message()).status_code == 200


def test_a_connection_that_never_sends_a_byte_is_closed_when_its_head_is_due(service):
    with socket.create_connection(("127.0.0.1", service.port)) as idle:
        started = time.monotonic()
        idle.settimeout(HEAD_TIMEOUT + SLACK)
        assert idle.recv(100) == b""  # closed without an answer: nothing was asked
        # Not sooner either: below the cap there is no one to make room for.
        assert HEAD_TIMEOUT - 0.5 < time.monotonic() - started < HEAD_TIMEOUT + SLACK
    assert timed_healthz(service, 2) < 2


def test_at_the_cap_idle_connections_leave_their_slots_to_the_waiting_ones():
    # Heads are due after 30 s here: without eviction each wave of idle connections would
    # hold the worker that long. A thread waits 1 s for a first byte, then the poller.
    waves = 3
    with Service({**ENV, "HTTP_HEADER_TIMEOUT": "30"}, command=[*SERVE_COMMAND, "--threads", str(THREADS)]) as service:
        idle = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(waves * THREADS)]
        try:
            assert timed_healthz(service, 2 * waves + SLACK) < 2 * waves + SLACK
            # The probe's connection came after all of them: all but THREADS - 1 had to go.
            assert sum(closed_by_server(sock) for sock in idle) >= (waves - 1) * THREADS + 1
        finally:
            for sock in idle:
                sock.close()


def test_clients_that_never_close_do_not_stall_the_worker(service):
    # Each gets its answer and the server's FIN; gunicorn then waits up to 2 s for the
    # client's FIN, which used to stop the worker's main loop for those 2 s, per client.
    closers = [socket.create_connection(("127.0.0.1", service.port), timeout=SLACK) for _ in range(2 * THREADS)]
    try:
        for sock in closers:
            sock.sendall(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.5)
        assert timed_healthz(service, 4) < 4
        for sock in closers:
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            assert split_response(answer)[0] == 200
    finally:
        for sock in closers:
            sock.close()


def test_a_kept_alive_connection_gets_a_fresh_head_deadline_for_each_request(service):
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=SLACK)
    try:
        conn.request("GET", "/-/healthz")
        assert conn.getresponse().read()
        first = conn.sock
        time.sleep(HEAD_TIMEOUT + 0.5)  # idle longer than a head may take, within keep-alive (5 s)
        conn.request("GET", "/-/healthz")
        assert conn.getresponse().status == 200
        assert conn.sock is first
    finally:
        conn.close()


def test_a_body_sent_in_pieces_within_the_deadline_is_served(service):
    body = json.dumps(message()).encode()
    with socket.create_connection(("127.0.0.1", service.port), timeout=SLACK) as sock:
        sock.sendall(JSON_POST + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10])
        time.sleep(BODY_TIMEOUT / 2)
        sock.sendall(body[10:])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert split_response(answer)[0] == 200


@pytest.mark.parametrize("variable", ["HTTP_HEADER_TIMEOUT", "HTTP_BODY_TIMEOUT"])
@pytest.mark.parametrize("value", ["0", "ten", "inf"])
def test_a_bad_deadline_variable_is_named_in_one_line(variable, value):
    service = Service({**ENV, variable: value}, command=SERVE_COMMAND)
    with pytest.raises(RuntimeError, match="exited with 1"):
        service.start(timeout=15)
    records = service.log_records()
    assert len(records) == 1 and records[0]["level"] == "CRITICAL"
    assert records[0]["message"].startswith(f"configuration error: {variable} must be a number of seconds")

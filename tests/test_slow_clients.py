"""Clients that never close their end cannot stall a worker."""

import socket
import time

import pytest
import requests
from support.service import SERVE_COMMAND, Service

pytestmark = pytest.mark.e2e

THREADS = 4
# Generous: a loaded 2-core machine may be slow to schedule anything.
SLACK = 5
ENV = {"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://", "RATE_LIMIT_MAX_REQUESTS": "1000"}


@pytest.fixture(scope="module")
def service():
    with Service(ENV, command=[*SERVE_COMMAND, "--threads", str(THREADS)]) as running:
        yield running


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    return int(status_line.split(" ")[1]), headers, rest[: int(headers["content-length"])]


def timed_healthz(service: Service, within: float) -> float:
    started = time.monotonic()
    assert requests.get(f"{service.url}/-/healthz", timeout=within).status_code == 200
    return time.monotonic() - started


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

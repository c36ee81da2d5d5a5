"""Test data shared by the Twilio tests: credentials, URLs, Twilio-shaped answers, a loopback server.

A uniquely named module rather than conftest, so the test modules can import it even
when the core's and other plugins' tests run in the same pytest session.
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Callable

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f" * 30 + "t0"
API_KEY_SID = "SK" + "fedcba9876543210" * 2
API_KEY_SECRET = "sEcReT" + "k" * 26
BASE = "https://api.twilio.com"
MESSAGES_URL = f"{BASE}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
BALANCE_URL = f"{BASE}/2010-04-01/Accounts/{ACCOUNT_SID}/Balance.json"


def basic(user: str, password: str) -> str:
    """The Authorization header value requests sends for HTTP Basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


TOKEN_AUTH = basic(ACCOUNT_SID, AUTH_TOKEN)
KEY_AUTH = basic(API_KEY_SID, API_KEY_SECRET)


def error_body(code: int, text: str, status: int) -> dict[str, object]:
    """A Twilio error answer as its REST API returns it."""
    return {"code": code, "message": text, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}


class Loopback:
    """A TCP server on 127.0.0.1 for transport tests; use it as a context manager.

    Each connection's request is read whole (`requests` counts them), then `script(conn)`
    plays the answer. With no script nothing listens, so connections are refused.
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
        self._sock.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Loopback:
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
    """Read the request, then close without a word."""


def stay_silent(conn: socket.socket) -> None:
    """Read the request, then say nothing for longer than any test's timeout."""
    time.sleep(3)


def break_the_chunks(conn: socket.socket) -> None:
    """Start a chunked 201 answer, then send a chunk that is not one."""
    conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"sid\r\nzz\r\n")

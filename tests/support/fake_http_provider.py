"""The server half of the local provider fakes (fake_plivo, fake_telnyx): listen, refuse, record.

A fake runs a threaded HTTP server on 127.0.0.1 in the test process. Tests set `mode`
to choose the answer and read `messages` to count what arrived; `refuse` stops
listening and cuts open connections (a provider that went down), `listen` comes back
on the same port.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeHTTPProvider:
    """What every fake shares: its server, its mode and what it received."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.messages: list[dict[str, Any]] = []
        self.lookups: list[str] = []
        self.mode = "ok"
        self.slow_seconds = 3.0
        self.balance = "10.00"
        self._serve(0)

    def _serve(self, port: int) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self.handler)
        self.server.daemon_threads = True
        self.server.fake = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeHTTPProvider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def refuse(self) -> None:
        """Stop listening and cut every open connection: the next connection is refused."""
        self.stop()
        with self.lock:
            open_now = list(self.connections)
        for conn in open_now:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def listen(self) -> None:
        """Listen again on the same port after `refuse`."""
        self._serve(self.server.server_address[1])
        self.thread.start()

    def reset(self) -> None:
        with self.lock:
            self.mode = "ok"
            self.balance = "10.00"
            self.messages.clear()
            self.lookups.clear()

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def record(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.messages.append(message)


class FakeHandler(BaseHTTPRequestHandler):
    """Request plumbing for a fake: connection tracking, bodies, JSON answers."""

    protocol_version = "HTTP/1.1"
    # The status line and headers leave in one write, the body in another: without
    # TCP_NODELAY the body waits for the client's delayed ACK (40 ms a send on Linux).
    disable_nagle_algorithm = True
    server: ThreadingHTTPServer

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    @property
    def fake(self) -> Any:
        return self.server.fake  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        with self.fake.lock:
            self.fake.connections.add(self.connection)

    def finish(self) -> None:
        with self.fake.lock:
            self.fake.connections.discard(self.connection)
        super().finish()

    def read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        return json.loads(raw) if raw else None

    def answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(payload, bytes) else "text/html")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

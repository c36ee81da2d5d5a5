"""A raw-socket provider on 127.0.0.1 that misbehaves on purpose: it drips, hangs and hangs up.

Each accepted connection plays one behaviour (the next of `behaviours`, the last one
repeating). The server counts what reached it, so tests can tell "nothing was sent" from
"the request arrived".
"""

from __future__ import annotations

import json
import socket
import threading
import time

TWILIO_CREATED = {"sid": "SM" + "d" * 32, "status": "queued", "num_segments": "1",
                  "date_created": "Thu, 24 Aug 2023 05:01:45 +0000"}

# What a connection can do once accepted.
BEHAVIOURS = (
    "answer",                # read each request, answer `status` with `body` at once
    "close_before_reading",  # hang up without reading a byte
    "close_mid_request",     # read part of the request head, then hang up
    "close_after_reading",   # read the whole request, then hang up
    "drip_head",             # read the request, send the answer one byte every `interval`
    "drip_body",             # read the request, send the head at once and the body byte by byte
    "hang",                  # read the request and say nothing
    "garbage",               # read the request, send `garbage`, hang up
)


def answer_bytes(status: int, body: bytes, reason: str = "Whatever") -> bytes:
    """A whole HTTP/1.1 answer with a JSON content type and a Content-Length."""
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


class DripProvider:
    """The misbehaving server; use it as a context manager."""

    def __init__(
        self,
        *behaviours: str,
        status: int = 201,
        body: bytes = json.dumps(TWILIO_CREATED).encode(),
        interval: float = 0.3,
        garbage: bytes = b"\x00\xffnot http at all\r\n\r\n",
        give_up_after: float = 6.0,
        backlog: int = 16,
        port: int = 0,
    ) -> None:
        unknown = set(behaviours) - set(BEHAVIOURS)
        if unknown or not behaviours:
            raise ValueError(f"behaviours must be some of {BEHAVIOURS}, got {behaviours}")
        self.behaviours = list(behaviours)
        self.answer = answer_bytes(status, body)
        self.interval = interval
        self.garbage = garbage
        # A dripping or hanging connection stops after this long, so that a client
        # without a deadline still ends (and its test fails instead of hanging).
        self.give_up_after = give_up_after
        self.connections = 0
        self.requests = 0  # requests received whole: head and declared body
        self.received = b""  # every byte read, all connections together
        self.closed_by_client = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", port))
        self._sock.listen(backlog)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._stop.set()
        self._sock.close()

    def __enter__(self) -> DripProvider:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                behaviour = self.behaviours[min(self.connections, len(self.behaviours) - 1)]
                self.connections += 1
            threading.Thread(target=self._handle, args=(conn, behaviour), daemon=True).start()

    def _handle(self, conn: socket.socket, behaviour: str) -> None:
        with conn:
            conn.settimeout(self.give_up_after)
            try:
                if behaviour == "close_before_reading":
                    return
                if behaviour == "close_mid_request":
                    self._record(conn.recv(10))
                    return
                if not self._read_request(conn):
                    return
                self._play(conn, behaviour)
            except OSError:
                pass

    def _record(self, data: bytes) -> None:
        with self._lock:
            self.received += data

    def _read_request(self, conn: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            self._record(chunk)
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return False
            self._record(chunk)
            body += chunk
        with self._lock:
            self.requests += 1
        return True

    def _play(self, conn: socket.socket, behaviour: str) -> None:
        if behaviour == "answer":
            # Keep-alive: answer every request the client sends on this connection.
            conn.sendall(self.answer)
            while self._read_request(conn):
                conn.sendall(self.answer)
        elif behaviour == "garbage":
            conn.sendall(self.garbage)
        elif behaviour == "hang":
            self._wait_for_client_close(conn)
        elif behaviour in ("drip_head", "drip_body"):
            head_end = self.answer.index(b"\r\n\r\n") + 4
            if behaviour == "drip_body":
                conn.sendall(self.answer[:head_end])
                self._drip(conn, self.answer[head_end:])
            else:
                self._drip(conn, self.answer)
            self._wait_for_client_close(conn)

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        stop = time.monotonic() + self.give_up_after
        for i in range(len(data)):
            if self._stop.is_set() or time.monotonic() > stop:
                return
            conn.sendall(data[i:i + 1])
            time.sleep(self.interval)

    def _wait_for_client_close(self, conn: socket.socket) -> None:
        # Keep the connection open (a keep-alive client may reuse it) until the client
        # hangs up, the test ends or give_up_after passes.
        try:
            while not self._stop.is_set():
                data = conn.recv(65536)
                if not data:
                    self.closed_by_client.set()
                    return
                self._record(data)
        except OSError:
            return


def unanswered_listener() -> tuple[socket.socket, list[socket.socket]]:
    """A listening socket whose accept queue is full, so a new connect hangs (SYN dropped).

    Returns the listener and the connections holding its queue; close them all after.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    for _ in range(8):
        probe = socket.socket()
        probe.settimeout(0.2)
        try:
            probe.connect(("127.0.0.1", port))
        except OSError:
            probe.close()
            return listener, held
        held.append(probe)
    for sock in [listener, *held]:
        sock.close()
    raise RuntimeError("the kernel accepts every connection here; cannot make a connect hang")

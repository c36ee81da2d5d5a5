"""A status webhook receiver on 127.0.0.1, run in a thread of the test process.

Every request is checked with standardwebhooks' own `Webhook.verify`, as a user's receiver
would. Tests set `mode` to choose the answer (`ok`, `error500`, `redirect`, `hang`) and
read `attempts` (every request, verified or not) and `delivered` (verified and answered 2xx).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes of base64, for tests only
MODES = ("ok", "error500", "redirect", "hang")


@dataclass
class Received:
    """One request the receiver got."""

    webhook_id: str | None
    headers: dict[str, str]
    body: bytes
    verified: bool
    answered: int
    at: float = field(default_factory=time.monotonic)

    @property
    def event(self) -> dict:
        return json.loads(self.body)


class WebhookReceiver:
    """The receiver's state: how to answer, and what arrived."""

    def __init__(self, secret: str = SECRET) -> None:
        self.webhook = Webhook(secret)
        self.mode = "ok"
        self.hang_s = 30.0
        self.attempts: list[Received] = []
        self.hanging = 0  # requests held open right now
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.receiver = self
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/sms"

    def start(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def set_mode(self, mode: str) -> None:
        assert mode in MODES
        with self.lock:
            self.mode = mode
        if mode != "hang":
            self.released.set()
        else:
            self.released.clear()

    @property
    def delivered(self) -> list[Received]:
        with self.lock:
            return [r for r in self.attempts if r.verified and 200 <= r.answered < 300]

    def delivered_ids(self) -> list[str]:
        return [r.webhook_id for r in self.delivered]

    def ids_once(self) -> bool:
        """Tell whether no event was delivered twice."""
        ids = self.delivered_ids()
        return len(ids) == len(set(ids))

    def unverified(self) -> list[Received]:
        with self.lock:
            return [r for r in self.attempts if not r.verified]

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        receiver: WebhookReceiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            receiver.webhook.verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        with receiver.lock:
            mode = receiver.mode
        status = 401 if not verified else {"ok": 204, "error500": 500, "redirect": 302, "hang": 200}[mode]
        if mode == "hang":
            with receiver.lock:
                receiver.hanging += 1
            receiver.released.wait(receiver.hang_s)
            with receiver.lock:
                receiver.hanging -= 1
        # A hung attempt counts as not answered: its client has given up by now.
        answered = 0 if mode == "hang" else status
        with receiver.lock:
            receiver.attempts.append(Received(headers.get("webhook-id"), headers, body, verified, answered))
        self.send_response(status)
        if status == 302:
            self.send_header("Location", receiver.url + "/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

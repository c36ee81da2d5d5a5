"""A fake Twilio and Kaleyra on 127.0.0.1, run in a thread of the test process.

Tests set `mode` to choose the answer and read `messages` to count what arrived.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

TWILIO_SEND = re.compile(r"/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages\.json")
TWILIO_BALANCE = re.compile(r"/2010-04-01/Accounts/(AC[0-9a-f]{32})/Balance\.json")
KALEYRA_SEND = re.compile(r"/v1/([^/]+)/messages")

MODES = ("ok", "reject", "error500", "error503", "slow", "rate_limited", "auth", "not_json",
         "no_id", "huge", "kaleyra_error_2xx")


class FakeProvider:
    """The fake's state: what to answer, and what it received."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.slow_seconds = 3.0
        self.balance = "10.00"
        self.balance_status = 200
        self.retry_after = "7"
        self.messages: list[dict] = []
        self.balance_calls = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.fake = self
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeProvider:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self.lock:
            self.mode = "ok"
            self.balance = "10.00"
            self.balance_status = 200
            self.messages.clear()
            self.balance_calls = 0

    def count(self) -> int:
        with self.lock:
            return len(self.messages)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    @property
    def fake(self) -> FakeProvider:
        return self.server.fake

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            fields = json.loads(raw)
        else:
            fields = {k: v[0] for k, v in parse_qs(raw).items()}
        fields["_auth"] = self.headers.get("Authorization") or self.headers.get("api-key")
        if TWILIO_SEND.fullmatch(self.path):
            kind = "twilio"
        elif KALEYRA_SEND.fullmatch(self.path):
            kind = "kaleyra"
        else:
            self._json(404, {"message": "no such path"})
            return
        with self.fake.lock:
            self.fake.messages.append({"provider": kind, **fields})
        getattr(self, f"_{self.fake.mode}")(kind)

    def do_GET(self) -> None:
        with self.fake.lock:
            self.fake.balance_calls += 1
        if self.fake.balance_status != 200:
            self._json(self.fake.balance_status, {"message": "balance unavailable"})
        elif TWILIO_BALANCE.fullmatch(self.path):
            self._json(200, {"account_sid": "AC" + "0" * 32, "balance": self.fake.balance,
                             "currency": "USD"})
        elif self.path.startswith(("/api/v1/", "/v1/")):
            self._json(200, {"data": {"balance": self.fake.balance, "currency": "EUR"},
                             "balance": self.fake.balance, "currency": "EUR"})
        else:
            self._json(404, {"message": "no such path"})

    # -- answers -------------------------------------------------------------------

    def _ok(self, kind: str) -> None:
        now = dt.datetime.now(dt.UTC)
        if kind == "twilio":
            self._json(201, {"sid": "SM" + uuid.uuid4().hex, "status": "queued", "num_segments": "1",
                             "date_created": email.utils.format_datetime(now), "error_code": None,
                             "price": None})
        else:
            mid = str(uuid.uuid4())
            self._json(202, {"id": mid, "createdDateTime": now.strftime("%Y-%m-%d %H:%M:%S+00:00"),
                             "totalCount": 1, "data": [{"message_id": f"{mid}:1"}], "error": {}})

    def _slow(self, kind: str) -> None:
        time.sleep(self.fake.slow_seconds)
        self._ok(kind)

    def _reject(self, kind: str) -> None:
        if kind == "twilio":
            self._json(400, {"code": 21211, "message": "The 'To' number is not a valid phone number.",
                             "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})
        else:
            self._json(400, {"code": "E413", "message": "Invalid number",
                             "error": {"to": "Invalid number"}})

    def _error500(self, kind: str) -> None:
        self._json(500, {"message": "internal error"})

    def _error503(self, kind: str) -> None:
        self._json(503, {"message": "unavailable"})

    def _rate_limited(self, kind: str) -> None:
        self._json(429, {"code": 20429, "message": "Too Many Requests", "status": 429},
                   headers={"Retry-After": self.fake.retry_after})

    def _auth(self, kind: str) -> None:
        self._json(401, {"code": 20003, "message": "Authenticate", "status": 401})

    def _not_json(self, kind: str) -> None:
        self._send(200, b"<html>gateway</html>", "text/html")

    def _no_id(self, kind: str) -> None:
        self._json(201 if kind == "twilio" else 202, {"status": "queued", "error": {}})

    def _huge(self, kind: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = b" " * 65536
        try:
            for _ in range(200):  # 12.5 MiB, far over any sane answer
                self.wfile.write(chunk)
        except OSError:
            pass

    def _kaleyra_error_2xx(self, kind: str) -> None:
        self._json(200, {"id": None, "error": {"code": "E101", "message": "Sender ID not approved"}})

    def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

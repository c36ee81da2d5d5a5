"""A fake Twilio, Kaleyra and Vonage on 127.0.0.1, run in a thread of the test process.

Tests set `mode` to choose the answer and read `messages` to count what arrived. Like
the real providers, it reports delivery status over HTTP to the callback URL a message
asked for (`post_status`): Twilio's reports signed with X-Twilio-Signature, Kaleyra's
as JSON to the URL (with its token) the service gave, Vonage's as fake_vonage.py says.
With `callback_first` set, it
reports a status before it answers the send, as a provider racing its own answer would.

Twilio's status lookup (`GET .../Messages/{sid}.json`) answers what `lookup_status` says
for the message (its price in `lookup_price`), or 429 with `lookup_mode`
``"rate_limited"``; `lookups` keeps when each lookup arrived (monotonic s) and for which sid.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import re
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import requests

from support import fake_vonage

TWILIO_SEND = re.compile(r"/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages\.json")
TWILIO_LOOKUP = re.compile(r"/2010-04-01/Accounts/(AC[0-9a-f]{32})/Messages/(SM[0-9a-f]{32})\.json")
TWILIO_BALANCE = re.compile(r"/2010-04-01/Accounts/(AC[0-9a-f]{32})/Balance\.json")
KALEYRA_SEND = re.compile(r"/v1/([^/]+)/messages")

MODES = ("ok", "reject", "error500", "error503", "slow", "rate_limited", "auth", "not_json",
         "no_id", "huge", "kaleyra_error_2xx", "internal", "quota")


class FakeProvider:
    """The fake's state: what to answer, and what it received."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.slow_seconds = 3.0
        self.balance = "10.00"
        self.balance_status = 200
        self.balance_delay = 0.0  # seconds the balance answer takes
        self.retry_after = "7"
        self.messages: list[dict] = []
        self.balance_calls = 0
        self.twilio_token = "tok3n" + "9" * 27  # support.service.TWILIO_TOKEN
        self.callback_first: str | None = None
        self.early_answers: list[int] = []
        # Vonage: its webhook signature (None: unsigned, the URL's token) and HTTP method.
        self.vonage_signature_secret: str | None = None
        self.vonage_signature_method = "md5hash"
        self.vonage_webhook = "POST"  # or "GET", "POST-JSON"
        self.vonage_parts = 1
        self.lookup_status = "delivered"
        self.lookup_price: str | None = "-0.00750"
        self.lookup_mode = "ok"
        self.lookups: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self._serve(0)

    def _serve(self, port: int) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
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

    def refuse(self) -> None:
        """Stop listening and cut every open connection: a new connection is refused.

        A pooled keep-alive connection of the service's is cut too, so its next call
        connects afresh and meets the refusal, as against a provider that went down.
        """
        self.server.shutdown()
        self.server.server_close()
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
            self.balance_status = 200
            self.balance_delay = 0.0
            self.messages.clear()
            self.balance_calls = 0
            self.callback_first = None
            self.early_answers.clear()
            self.vonage_webhook = "POST"
            self.vonage_parts = 1
            self.lookup_status, self.lookup_price, self.lookup_mode = "delivered", "-0.00750", "ok"
            self.lookups.clear()

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def post_status(self, sent: dict, status: str, *, forge: bool = False, token: str | None = None,
                    error_code: str | None = None) -> requests.Response:
        """Report `status` of the message `sent` (an entry of `messages`) to its callback URL.

        Twilio: the signed form Twilio posts (`forge` spoils the signature, `token` signs
        with another auth token). Kaleyra: a JSON report to the URL given in `callback`
        (`token` replaces the URL's token). Vonage: `fake_vonage.post_receipt`.
        """
        if sent["provider"] == "vonage":
            return fake_vonage.post_receipt(self, sent, status, forge=forge, error_code=error_code)
        if sent["provider"] == "twilio":
            url = sent["StatusCallback"]
            fields = {"MessageSid": sent["_sid"], "SmsSid": sent["_sid"], "AccountSid": sent["_account"],
                      "From": sent["From"], "To": sent["To"], "MessageStatus": status, "SmsStatus": status,
                      "ApiVersion": "2010-04-01"}
            if error_code:
                fields["ErrorCode"] = error_code
            signature = twilio_signature(token or self.twilio_token, url, fields)
            if forge:
                signature = signature[::-1]
            return requests.post(url, data=fields, headers={"X-Twilio-Signature": signature}, timeout=10)
        url = json.loads(sent["callback"])["url"]
        if token is not None:
            url = url.split("?token=")[0] + f"?token={token}"
        report = {"id": f"{sent['_sid']}:1", "status": status, "to": sent["to"].lstrip("+")}
        if error_code:
            report["trace"] = error_code
        return requests.post(url, json=report, timeout=10)

    def post_inbound(self, service_url: str, sender: str, body: str, *, forge: bool = False,
                     opt_out_type: str | None = None) -> requests.Response:
        """Post a reply `sender` sent to our number, as Twilio's messaging webhook does, signed.

        `service_url` is the service's PUBLIC_BASE_URL; `forge` spoils the signature.
        """
        url = f"{service_url}/callbacks/twilio/inbound"
        sid = "SM" + uuid.uuid4().hex
        fields = {"MessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "1f" * 16, "From": sender,
                  "To": "+15017122661", "Body": body, "NumSegments": "1", "NumMedia": "0",
                  "ApiVersion": "2010-04-01"}
        if opt_out_type:
            fields["OptOutType"] = opt_out_type
        signature = twilio_signature(self.twilio_token, url, fields)
        if forge:
            signature = signature[::-1]
        return requests.post(url, data=fields, headers={"X-Twilio-Signature": signature}, timeout=10)


def twilio_signature(token: str, url: str, fields: dict[str, str]) -> str:
    """X-Twilio-Signature of a form post, as Twilio computes it."""
    text = url + "".join(name + fields[name] for name in sorted(fields))
    return base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha1).digest()).decode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK, 40 ms a request on Linux.
    disable_nagle_algorithm = True
    server: ThreadingHTTPServer

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def setup(self) -> None:
        super().setup()
        with self.fake.lock:
            self.fake.connections.add(self.connection)

    def finish(self) -> None:
        with self.fake.lock:
            self.fake.connections.discard(self.connection)
        super().finish()

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
        twilio = TWILIO_SEND.fullmatch(self.path)
        if twilio:
            kind = "twilio"
            fields["_account"] = twilio.group(1)
        elif KALEYRA_SEND.fullmatch(self.path):
            kind = "kaleyra"
        elif self.path == fake_vonage.SEND_PATH:
            kind = "vonage"
        else:
            self._json(404, {"message": "no such path"})
            return
        self.sent = {"provider": kind, **fields}
        with self.fake.lock:
            self.fake.messages.append(self.sent)
        if kind == "vonage":
            fake_vonage.answer_send(self, self.fake)
            return
        getattr(self, f"_{self.fake.mode}")(kind)

    def do_GET(self) -> None:
        lookup = TWILIO_LOOKUP.fullmatch(self.path)
        if lookup:
            self._lookup(lookup.group(2))
            return
        with self.fake.lock:
            self.fake.balance_calls += 1
        time.sleep(self.fake.balance_delay)
        if self.fake.balance_status != 200:
            self._json(self.fake.balance_status, {"message": "balance unavailable"})
        elif self.path == fake_vonage.BALANCE_PATH:
            self._json(200, fake_vonage.balance_answer(self.fake))
        elif TWILIO_BALANCE.fullmatch(self.path):
            self._json(200, {"account_sid": "AC" + "0" * 32, "balance": self.fake.balance,
                             "currency": "USD"})
        elif self.path.startswith(("/api/v1/", "/v1/")):
            self._json(200, {"data": {"balance": self.fake.balance, "currency": "EUR"},
                             "balance": self.fake.balance, "currency": "EUR"})
        else:
            self._json(404, {"message": "no such path"})

    def _lookup(self, sid: str) -> None:
        with self.fake.lock:
            self.fake.lookups.append((time.monotonic(), sid))
            known = any(sent.get("_sid") == sid for sent in self.fake.messages)
            mode, status, price = self.fake.lookup_mode, self.fake.lookup_status, self.fake.lookup_price
        if mode == "rate_limited":
            self._json(429, {"code": 20429, "message": "Too Many Requests", "status": 429},
                       headers={"Retry-After": self.fake.retry_after})
        elif not known:
            self._json(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
        else:
            self._json(200, {"sid": sid, "status": status, "error_code": None, "error_message": None,
                             "num_segments": "1", "price": price, "price_unit": "USD",
                             "date_updated": email.utils.format_datetime(dt.datetime.now(dt.UTC))})

    # -- answers -------------------------------------------------------------------

    def _ok(self, kind: str) -> None:
        now = dt.datetime.now(dt.UTC)
        if kind == "twilio":
            sid = self.sent["_sid"] = "SM" + uuid.uuid4().hex
            self._report_first()
            self._json(201, {"sid": sid, "status": "queued", "num_segments": "1",
                             "date_created": email.utils.format_datetime(now), "error_code": None,
                             "price": None})
        else:
            mid = self.sent["_sid"] = str(uuid.uuid4())
            self._report_first()
            self._json(202, {"id": mid, "createdDateTime": now.strftime("%Y-%m-%d %H:%M:%S+00:00"),
                             "totalCount": 1, "data": [{"message_id": f"{mid}:1"}], "error": {}})

    def _report_first(self) -> None:
        # The provider's callback reaches the service while the send still waits for us.
        if self.fake.callback_first and ("StatusCallback" in self.sent or "callback" in self.sent):
            answer = self.fake.post_status(self.sent, self.fake.callback_first)
            with self.fake.lock:
                self.fake.early_answers.append(answer.status_code)

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

    def _unsubscribed(self, kind: str) -> None:
        # The receiver replied STOP to this sender (Twilio), so the message is refused.
        self._json(400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient",
                         "more_info": "https://www.twilio.com/docs/errors/21610", "status": 400})

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

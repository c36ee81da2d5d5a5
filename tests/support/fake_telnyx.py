"""A fake Telnyx on 127.0.0.1: answers sends, the balance and lookups, and calls back signed.

Its webhooks are JSON events signed with Ed25519 over "{timestamp}|{raw body}" with a
key pair made for the test session (the service is given its public half), sent over
real HTTP to the service.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
import uuid

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from support.fake_http_provider import FakeHandler, FakeHTTPProvider

API_KEY = "KEYtelnyxE2e" + "5" * 24
LOOKUP = re.compile(r"/v2/messages/([^/]+)")


def _error(code: str, title: str) -> dict:
    return {"errors": [{"code": code, "title": title, "detail": title}]}


# What each mode answers to a send: (HTTP status, body).
FAILURES = {
    "reject": (400, _error("10002", "Invalid phone number")),
    "auth": (401, _error("10009", "Authentication failed")),
    "rate_limited": (429, _error("10011", "Too many requests")),
    "unsubscribed": (409, _error("40300", "Blocked due to STOP message")),
    "error500": (500, _error("10007", "Unexpected error")),
    "not_json": (200, b"<html>gateway</html>"),
}


class FakeTelnyx(FakeHTTPProvider):
    """A fake Telnyx; `messages` holds each send's JSON plus ``_sid``."""

    def __init__(self) -> None:
        self.handler = _Handler
        self.key = Ed25519PrivateKey.generate()
        self.public_key = base64.b64encode(self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
        super().__init__()

    def env(self) -> dict[str, str]:
        """The service's variables for this fake."""
        return {"SERVICE_PROVIDER": "telnyx", "TELNYX_API_KEY": API_KEY, "TELNYX_PUBLIC_KEY": self.public_key,
                "TELNYX_BASE_URL": self.url}

    def _post(self, url: str, event_type: str, payload: dict, *, forge: bool = False,
              age: int = 0) -> requests.Response:
        body = json.dumps({"data": {"event_type": event_type, "id": str(uuid.uuid4()), "record_type": "event",
                                    "occurred_at": dt.datetime.now(dt.UTC).isoformat(), "payload": payload},
                           "meta": {"attempt": 1, "delivered_to": url}}).encode()
        stamp = str(int(time.time()) - age)
        key = Ed25519PrivateKey.generate() if forge else self.key
        signature = base64.b64encode(key.sign(stamp.encode() + b"|" + body)).decode()
        return requests.post(url, data=body, timeout=10, headers={
            "Content-Type": "application/json", "telnyx-signature-ed25519": signature, "telnyx-timestamp": stamp})

    def post_status(self, sent: dict, status: str, *, error_code: str | None = None, forge: bool = False,
                    age: int = 0) -> requests.Response:
        """Report `status` of the message `sent` to the `webhook_url` its send named, signed."""
        kind = "message.finalized" if status not in ("queued", "sending", "sent") else "message.sent"
        payload = _message(sent, status)
        if error_code:
            payload["errors"] = [{"code": error_code, "title": "delivery error", "detail": "delivery error"}]
        return self._post(sent["webhook_url"], kind, payload, forge=forge, age=age)

    def post_inbound(self, service_url: str, sender: str, text: str, *, forge: bool = False) -> requests.Response:
        """Post a message.received event (the messaging profile's webhook) to the service, signed."""
        payload = {"record_type": "message", "id": str(uuid.uuid4()), "direction": "inbound", "type": "SMS",
                   "from": {"phone_number": sender}, "to": [{"phone_number": "+14156667777",
                                                             "status": "webhook_delivered"}],
                   "text": text, "errors": []}
        return self._post(f"{service_url}/callbacks/telnyx/inbound", "message.received", payload, forge=forge)


def _message(sent: dict, status: str) -> dict:
    return {"record_type": "message", "id": sent["_sid"], "direction": "outbound", "type": "SMS",
            "from": {"phone_number": sent["from"]}, "to": [{"phone_number": sent["to"], "status": status}],
            "text": sent["text"], "parts": 1, "cost": {"amount": "0.0040", "currency": "USD"},
            "received_at": dt.datetime.now(dt.UTC).isoformat(), "errors": []}


class _Handler(FakeHandler):
    def do_POST(self) -> None:
        if self.path != "/v2/messages":
            self.answer(404, _error("10005", "Resource not found"))
            return
        sent = {**self.read_json(), "_auth": self.headers.get("Authorization")}
        self.fake.record(sent)
        mode = self.fake.mode
        if mode == "slow":
            time.sleep(self.fake.slow_seconds)
        if mode in FAILURES:
            self.answer(*FAILURES[mode])
            return
        sent["_sid"] = str(uuid.uuid4())
        self.answer(200, {"data": _message(sent, "queued")})

    def do_GET(self) -> None:
        lookup = LOOKUP.fullmatch(self.path)
        if self.path == "/v2/balance":
            self.answer(200, {"data": {"balance": self.fake.balance, "available_credit": self.fake.balance,
                                       "currency": "USD"}})
        elif lookup:
            with self.fake.lock:
                self.fake.lookups.append(lookup.group(1))
                known = [m for m in self.fake.messages if m.get("_sid") == lookup.group(1)]
            if known:
                self.answer(200, {"data": _message(known[0], "delivered")})
            else:
                self.answer(404, _error("10005", "Resource not found"))
        else:
            self.answer(404, _error("10005", "Resource not found"))

"""A fake Plivo on 127.0.0.1: answers sends, the account and message records, and calls back signed.

Its status reports and inbound messages are form posts signed with X-Plivo-Signature-V3
(HMAC-SHA256 with the auth token over the URL, the sorted fields and a nonce), as Plivo
signs them, sent over real HTTP to the service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid

import requests

from support.fake_http_provider import FakeHandler, FakeHTTPProvider

AUTH_ID = "MAFAKE0PLIVO0E2E0ID0"
AUTH_TOKEN = "plivoE2eToken" + "7" * 19
SEND = re.compile(rf"/v1/Account/{AUTH_ID}/Message/")
RECORD = re.compile(rf"/v1/Account/{AUTH_ID}/Message/([^/]+)/")
ACCOUNT = f"/v1/Account/{AUTH_ID}/"

# What each mode answers to a send: (HTTP status, body).
FAILURES = {
    "reject": (400, {"api_id": "x", "error": "invalid destination number"}),
    "auth": (401, {"api_id": "x", "error": "authentication failed"}),
    "rate_limited": (429, {"api_id": "x", "error": "too many requests"}),
    "error500": (500, {"api_id": "x", "error": "internal error"}),
    "not_json": (202, b"<html>gateway</html>"),
}


def plivo_env(fake_url: str) -> dict[str, str]:
    """The service's variables for this fake."""
    return {"SERVICE_PROVIDER": "plivo", "PLIVO_AUTH_ID": AUTH_ID, "PLIVO_AUTH_TOKEN": AUTH_TOKEN,
            "PLIVO_BASE_URL": fake_url}


def sign(url: str, fields: dict[str, str], nonce: str, token: str = AUTH_TOKEN) -> str:
    """X-Plivo-Signature-V3 of a form post to `url` (no query), as Plivo computes it."""
    text = url + "?" + "".join(name + fields[name] for name in sorted(fields)) + "." + nonce
    return base64.b64encode(hmac.new(token.encode(), text.encode(), hashlib.sha256).digest()).decode()


class FakePlivo(FakeHTTPProvider):
    """A fake Plivo; `messages` holds each send's JSON plus ``_sid``."""

    def __init__(self) -> None:
        self.handler = _Handler
        super().__init__()

    def _post(self, url: str, fields: dict[str, str], forge: bool) -> requests.Response:
        nonce = str(secrets.randbelow(10**20))
        signature = sign(url, fields, nonce, token="x" * 32 if forge else AUTH_TOKEN)
        # Plivo sends one signature per active auth token: an old one beside the current.
        header = f"{sign(url, fields, nonce, token='rotated-out-token')},{signature}"
        return requests.post(url, data=fields, timeout=10,
                             headers={"X-Plivo-Signature-V3": header, "X-Plivo-Signature-V3-Nonce": nonce})

    def post_status(self, sent: dict, status: str, *, error_code: str = "", forge: bool = False,
                    amount: str = "0.00650") -> requests.Response:
        """Report `status` of the message `sent` to the `url` its send named, signed."""
        fields = {"MessageUUID": sent["_sid"], "To": sent["dst"].lstrip("+"), "From": sent["src"].lstrip("+"),
                  "Type": "sms", "Status": status, "Units": "1", "TotalRate": amount, "TotalAmount": amount,
                  "MCC": "310", "MNC": "004", "ErrorCode": error_code, "Sequence": "1",
                  "MessageTime": time.strftime("%Y-%m-%d %H:%M:%S")}
        return self._post(sent["url"], fields, forge)

    def post_inbound(self, service_url: str, sender: str, text: str, *, forge: bool = False) -> requests.Response:
        """Post a message `sender` sent to our number to the service's inbound route, signed."""
        fields = {"From": sender.lstrip("+"), "To": "14156667777", "Text": text, "Type": "sms",
                  "MessageUUID": str(uuid.uuid4()), "Units": "1", "TotalRate": "0", "TotalAmount": "0"}
        return self._post(f"{service_url}/callbacks/plivo/inbound", fields, forge)


class _Handler(FakeHandler):
    def do_POST(self) -> None:
        if not SEND.fullmatch(self.path):
            self.answer(404, {"api_id": "x", "error": "not found"})
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
        self.answer(202, {"api_id": str(uuid.uuid4()), "message": "message(s) queued", "message_uuid": [sent["_sid"]]})

    def do_GET(self) -> None:
        record = RECORD.fullmatch(self.path)
        if self.path == ACCOUNT:
            self.answer(200, {"auth_id": AUTH_ID, "cash_credits": self.fake.balance, "billing_mode": "prepaid"})
        elif record:
            with self.fake.lock:
                self.fake.lookups.append(record.group(1))
                known = [m for m in self.fake.messages if m.get("_sid") == record.group(1)]
            if not known:
                self.answer(404, {"api_id": "x", "error": "not found"})
                return
            self.answer(200, {"message_uuid": record.group(1), "message_state": "delivered", "error_code": "000",
                              "to_number": known[0]["dst"].lstrip("+"), "total_amount": "0.00650"})
        else:
            self.answer(404, {"api_id": "x", "error": "not found"})

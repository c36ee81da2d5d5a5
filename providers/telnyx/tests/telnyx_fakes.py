"""Test data shared by the Telnyx tests: a key pair made here, Telnyx-shaped answers, signed webhooks.

A uniquely named module rather than conftest, so the test modules can import it even
when the core's and other plugins' tests run in the same pytest session. Telnyx
publishes no signature vectors, so the webhooks are signed with a key pair made for
this test session, as Telnyx signs them with its own.
"""

from __future__ import annotations

import base64
import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sms_service.provider import CallbackRequest
from sms_service.testing import json_request

API_KEY = "KEY0123456789ABCDEF_telnyxSecretPart0123"
PRIVATE_KEY = Ed25519PrivateKey.generate()
PUBLIC_KEY = base64.b64encode(PRIVATE_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
OTHER_KEY = Ed25519PrivateKey.generate()
PROFILE_ID = "40017f8e-49bd-4f16-9e3d-ef103f916228"
BASE = "https://api.telnyx.com"
MESSAGES_URL = f"{BASE}/v2/messages"
BALANCE_URL = f"{BASE}/v2/balance"
BEARER = f"Bearer {API_KEY}"
MESSAGE_ID = "40317f8e-cf6f-4b12-9b7b-1c3ad54d1c9a"
CALLBACK = "https://sms.example.com/callbacks/telnyx/status"
INBOUND = "https://sms.example.com/callbacks/telnyx/inbound"


def message_object(status: str = "queued", *, errors: list | None = None, cost: dict | None = None,
                   message_id: str = MESSAGE_ID, to: str = "+14155550123", direction: str = "outbound",
                   text: str = "hello") -> dict:
    """A Telnyx message object (send answer, lookup, webhook payload)."""
    return {
        "record_type": "message", "id": message_id, "direction": direction, "type": "SMS",
        "messaging_profile_id": PROFILE_ID, "organization_id": "b448f9cc-a842-4784-98e9-03c1a5872950",
        "from": {"phone_number": "+14156667777", "carrier": "Telnyx", "line_type": "Wireless"},
        "to": [{"phone_number": to, "status": status, "carrier": "T-MOBILE USA, INC.", "line_type": "Wireless"}],
        "text": text, "media": [], "webhook_url": CALLBACK, "webhook_failover_url": "",
        "encoding": "GSM-7", "parts": 1, "tags": [], "cost": cost,
        "received_at": "2026-11-26T08:00:00.000+00:00", "sent_at": None, "completed_at": None,
        "valid_until": "2026-11-26T09:00:00.000+00:00", "errors": errors or [],
    }


def answer(message: dict) -> dict:
    """The {"data": ...} envelope of Telnyx's answers."""
    return {"data": message}


def error_body(code: str, title: str, detail: str = "") -> dict:
    """A Telnyx error answer."""
    return {"errors": [{"code": code, "title": title, "detail": detail or title,
                        "meta": {"url": f"https://developers.telnyx.com/docs/overview/errors/{code}"}}]}


def event(event_type: str, payload: dict) -> dict:
    """A Telnyx webhook event around a message object."""
    return {"data": {"event_type": event_type, "id": "0ccc7b54-4df3-4bca-a65a-3da1ecc777f0",
                     "occurred_at": "2026-11-26T08:00:05.000+00:00", "payload": payload,
                     "record_type": "event"},
            "meta": {"attempt": 1, "delivered_to": CALLBACK}}


def signed(url: str, body: dict | bytes, *, key: Ed25519PrivateKey = PRIVATE_KEY, timestamp: int | None = None,
           signature: str | None = None) -> CallbackRequest:
    """A webhook to `url` as Telnyx posts it, signed over "{timestamp}|{raw body}"."""
    raw = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    given = signature or base64.b64encode(key.sign(stamp.encode() + b"|" + raw)).decode()
    data = json.loads(raw) if raw.strip() else None
    return json_request(url, data, {"telnyx-signature-ed25519": given, "telnyx-timestamp": stamp}, body=raw)

"""Test data shared by the Vonage tests: credentials, URLs, Vonage-shaped answers and webhooks.

A uniquely named module rather than conftest, so the test modules can import it even
when the core's and other plugins' tests run in the same pytest session.
"""

from __future__ import annotations

import base64
import time
from urllib.parse import urlencode

from sms_service.provider import CallbackRequest
from sms_service.testing import form_request, json_request
from sms_service_vonage import signature

API_KEY = "a1b2c3d4"
API_SECRET = "Sup3rS3cretValue"
SIGNATURE_SECRET = "s1gnatureS3cret0123456789abcdef"
BASE = "https://rest.nexmo.com"
SEND_URL = f"{BASE}/sms/json"
BALANCE_URL = f"{BASE}/account/get-balance"
STATUS_URL = "https://sms.example.com/callbacks/vonage/status"
INBOUND_URL = "https://sms.example.com/callbacks/vonage/inbound"
BASIC = "Basic " + base64.b64encode(f"{API_KEY}:{API_SECRET}".encode()).decode()


def part(status: str = "0", message_id: str = "0A0000000123ABCD1", price: str | None = "0.03330000",
         **extra: str) -> dict[str, str]:
    """One entry of the send answer's ``messages`` (all values strings, as Vonage writes them)."""
    entry = {"to": "447700900000", "message-id": message_id, "status": status,
             "remaining-balance": "3.14159265", "network": "23410", **extra}
    if price is not None:
        entry["message-price"] = price
    return entry


def refusal(status: str, text: str) -> dict[str, object]:
    """A send answer refusing the message: HTTP 200, one entry with a non-zero status."""
    return {"message-count": "1", "messages": [{"status": status, "error-text": text}]}


def sign(fields: dict[str, str], secret: str = SIGNATURE_SECRET, method: str = "md5hash",
         timestamp: int | None = None) -> dict[str, str]:
    """`fields` plus a timestamp and their ``sig``, as Vonage signs a webhook."""
    signed = {**fields, "timestamp": str(int(time.time()) if timestamp is None else timestamp)}
    signed["sig"] = signature.compute(signed, secret, method)
    return signed


def receipt_fields(message_id: str = "0A0000000123ABCD1", status: str = "delivered", err: str = "0",
                   **extra: str) -> dict[str, str]:
    """A delivery receipt's fields (PROVIDERS.md, Vonage)."""
    return {"msisdn": "447700900000", "to": "AcmeInc", "network-code": "23410", "messageId": message_id,
            "price": "0.03330000", "status": status, "scts": "2001011400", "err-code": err,
            "api-key": API_KEY, "message-timestamp": "2020-01-01 14:00:00", **extra}


def inbound_fields(sender: str = "447700900001", text: str = "STOP", **extra: str) -> dict[str, str]:
    """An inbound message's fields (PROVIDERS.md, Vonage)."""
    return {"api-key": API_KEY, "msisdn": sender, "to": "447700900000", "messageId": "0A0000000123ABCD9",
            "text": text, "type": "text", "keyword": text.split()[0].upper() if text.split() else "",
            "message-timestamp": "2020-01-01 12:00:00", "nonce": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", **extra}


def as_get(url: str, fields: dict[str, str]) -> CallbackRequest:
    """A webhook sent as a GET query, as the service hands it over."""
    joiner = "&" if "?" in url else "?"
    return CallbackRequest(url=f"{url}{joiner}{urlencode(fields)}", headers={}, body=b"")


def as_form(url: str, fields: dict[str, str]) -> CallbackRequest:
    return form_request(url, fields)


def as_json(url: str, fields: dict[str, str]) -> CallbackRequest:
    return json_request(url, fields)


SHAPES = {"get": as_get, "form": as_form, "json": as_json}

"""The Vonage side of the fake provider: its SMS API answers, signed receipts and inbound replies.

`FakeProvider` (fake_provider.py) serves every fake wire format on its port; a send to
``/sms/json`` comes here. Vonage answers HTTP 200 even when it refuses, with a
non-zero ``status`` per part, and reports over HTTP like the real one: delivery
receipts to the message's ``callback`` and inbound messages to the service's inbound
URL, as a GET query, a POST form or a POST JSON body (``FakeProvider.vonage_webhook``),
signed with ``sig`` when ``FakeProvider.vonage_signature_secret`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import requests

if TYPE_CHECKING:
    from support.fake_provider import FakeProvider

SEND_PATH = "/sms/json"
BALANCE_PATH = "/account/get-balance"
API_KEY = "e2ekey01"
API_SECRET = "e2eS3cretVonage"
PRICE = "0.03330000"

# The fake's modes (FakeProvider.mode) as Vonage says them: HTTP status and ``status``.
REFUSALS = {
    "reject": ("3", "Invalid to param"),
    "unsubscribed": ("7", "Number barred."),
    "rate_limited": ("1", "Throughput Rate Exceeded - please wait [ 1000 ] and retry"),
    "auth": ("4", "Bad Credentials"),
    "internal": ("5", "Internal Error"),
    "quota": ("9", "Partner quota exceeded"),
}


def vonage_env(fake_url: str, signature_secret: str | None = None, method: str = "md5hash") -> dict[str, str]:
    """The service's variables for the vonage plugin against the fake at `fake_url`."""
    env = {"VONAGE_API_KEY": API_KEY, "VONAGE_API_SECRET": API_SECRET, "VONAGE_BASE_URL": fake_url}
    if signature_secret:
        env |= {"VONAGE_SIGNATURE_SECRET": signature_secret, "VONAGE_SIGNATURE_METHOD": method}
    return env


def sig(params: dict[str, str], secret: str, method: str) -> str:
    """Vonage's ``sig``, written here from PROVIDERS.md, apart from the plugin's own code."""
    text = "".join(f"&{k}={params[k].replace('&', '_').replace('=', '_')}" for k in sorted(params) if k != "sig")
    if method == "md5hash":
        return hashlib.md5((text + secret).encode()).hexdigest()
    return hmac.new(secret.encode(), text.encode(), getattr(hashlib, method)).hexdigest()


def answer_send(handler: Any, fake: FakeProvider) -> None:
    """Answer one ``/sms/json`` post as the fake's mode says; fills ``_sid`` on success."""
    mode = fake.mode
    if mode == "slow":
        time.sleep(fake.slow_seconds)
        mode = "ok"
    if mode in REFUSALS:
        code, text = REFUSALS[mode]
        handler._json(200, {"message-count": "1", "messages": [{"status": code, "error-text": text}]})
    elif mode == "error500":
        handler._json(500, {"title": "Internal Error"})
    elif mode == "error503":
        handler._json(503, {"title": "Service Unavailable"})
    elif mode == "not_json":
        handler._send(200, b"<html>gateway</html>", "text/html")
    else:
        sid = handler.sent["_sid"] = uuid.uuid4().hex[:16].upper()
        parts = max(1, fake.vonage_parts)
        handler._json(200, {"message-count": str(parts), "messages": [
            {"to": handler.sent.get("to", ""), "message-id": sid if n == 0 else uuid.uuid4().hex[:16].upper(),
             "status": "0", "remaining-balance": "3.14159265", "message-price": PRICE, "network": "23410"}
            for n in range(parts)]})


def balance_answer(fake: FakeProvider) -> dict[str, Any]:
    """``/account/get-balance``: a number, no currency."""
    return {"value": float(fake.balance), "autoReload": False}


def _deliver(fake: FakeProvider, url: str, fields: dict[str, str], forge: bool) -> requests.Response:
    if fake.vonage_signature_secret:
        fields = {**fields, "timestamp": str(int(time.time())), "nonce": str(uuid.uuid4())}
        fields["sig"] = sig(fields, fake.vonage_signature_secret, fake.vonage_signature_method)
        if forge:
            fields["sig"] = fields["sig"][::-1]
    elif forge:
        url = url.split("?token=")[0]
    how = fake.vonage_webhook
    if how == "GET":
        joiner = "&" if "?" in url else "?"
        return requests.get(f"{url}{joiner}{urlencode(fields)}", timeout=10)
    if how == "POST-JSON":
        return requests.post(url, json=fields, timeout=10)
    return requests.post(url, data=fields, timeout=10)


def post_receipt(fake: FakeProvider, sent: dict, status: str, *, forge: bool = False,
                 error_code: str | None = None) -> requests.Response:
    """Send the delivery receipt of the message `sent` to the callback it named."""
    fields = {"msisdn": sent["to"], "to": sent["from"], "network-code": "23410", "messageId": sent["_sid"],
              "price": PRICE, "status": status, "scts": time.strftime("%y%m%d%H%M"), "err-code": error_code or "0",
              "api-key": API_KEY, "message-timestamp": time.strftime("%Y-%m-%d %H:%M:%S")}
    return _deliver(fake, sent["callback"], fields, forge)


def post_inbound(fake: FakeProvider, url: str, sender: str, text: str, *, forge: bool = False) -> requests.Response:
    """Send the message `sender` (E.164) wrote to our number to the service's inbound `url`."""
    words = text.split()
    fields = {"api-key": API_KEY, "msisdn": sender.lstrip("+"), "to": "447700900000",
              "messageId": uuid.uuid4().hex[:16].upper(), "text": text, "type": "text",
              "keyword": words[0].upper() if words else "", "message-timestamp": time.strftime("%Y-%m-%d %H:%M:%S")}
    return _deliver(fake, url, fields, forge)

"""Test data shared by the Plivo tests: credentials, URLs, Plivo-shaped answers, signing.

A uniquely named module rather than conftest, so the test modules can import it even
when the core's and other plugins' tests run in the same pytest session.
"""

from __future__ import annotations

import base64

from sms_service.provider import CallbackRequest
from sms_service.testing import form_request
from sms_service_plivo import signature

AUTH_ID = "MAZDQ1ZJIYMDZKMMZKYM"
AUTH_TOKEN = "ZjRhNGQ2MjJkMWYxYmQ0ZTg3N2E1Y2Ix"
BASE = "https://api.plivo.com"
ACCOUNT_URL = f"{BASE}/v1/Account/{AUTH_ID}/"
MESSAGES_URL = f"{ACCOUNT_URL}Message/"
BASIC = "Basic " + base64.b64encode(f"{AUTH_ID}:{AUTH_TOKEN}".encode()).decode()
MESSAGE_UUID = "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
CALLBACK = "https://sms.example.com/callbacks/plivo/status"
INBOUND = "https://sms.example.com/callbacks/plivo/inbound"

# Plivo's documented send answer (202).
QUEUED = {"api_id": "db342550-7f1d-11e1-8ea7-1231380bc196", "message": "message(s) queued",
          "message_uuid": [MESSAGE_UUID]}

# A message record, as GET .../Message/{uuid}/ answers it.
RECORD = {
    "api_id": "e9b0d3a4-5c6d-11ee-8c99-0242ac120002", "error_code": "000", "from_number": "14156667777",
    "message_direction": "outbound", "message_state": "delivered", "message_time": "2026-11-26 08:00:00+00:00",
    "message_type": "sms", "message_updated_time": "2026-11-26 08:00:05+00:00", "message_uuid": MESSAGE_UUID,
    "resource_uri": f"/v1/Account/{AUTH_ID}/Message/{MESSAGE_UUID}/", "to_number": "14155550123",
    "total_amount": "0.00650", "total_rate": "0.00650", "units": 1,
}

# The account, as GET /v1/Account/{auth_id}/ answers it.
ACCOUNT = {"account_type": "standard", "address": "", "api_id": "x", "auth_id": AUTH_ID, "auto_recharge": False,
           "billing_mode": "prepaid", "cash_credits": "24.93500", "city": "", "name": "Acme",
           "resource_uri": f"/v1/Account/{AUTH_ID}/", "state": "", "timezone": "Etc/UTC"}


def error_body(text: str) -> dict[str, str]:
    """A Plivo error answer."""
    return {"api_id": "5e0d7fb6-0000-11ee-8c99-0242ac120002", "error": text}


def signed(url: str, form: dict[str, list[str]], token: str = AUTH_TOKEN, nonce: str = "31052826427862744453",
           signatures: str | None = None) -> CallbackRequest:
    """A form POST to `url` as Plivo sends it, signed with `token` (or carrying `signatures`)."""
    given = signatures or signature.compute(token, signature.base_string("POST", url, form), nonce)
    return form_request(url, form, {"x-plivo-signature-v3": given, "x-plivo-signature-v3-nonce": nonce})


def status_form(status: str, **extra: str) -> dict[str, list[str]]:
    """The fields of a Plivo status callback."""
    form = {"MessageUUID": MESSAGE_UUID, "To": "14155550123", "From": "14156667777", "Type": "sms",
            "Status": status, "Units": "1", "TotalRate": "0.00650", "TotalAmount": "0.00650", "MCC": "310",
            "MNC": "004", "ErrorCode": "", "Sequence": "1", "MessageTime": "2026-11-26 08:00:00",
            "QueuedTime": "2026-11-26 08:00:00", "SentTime": "2026-11-26 08:00:01",
            "DeliveryReportTime": "2026-11-26 08:00:05", **extra}
    return {k: [v] for k, v in form.items()}

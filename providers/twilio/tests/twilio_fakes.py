"""Test data shared by the Twilio tests: credentials, URLs, Twilio-shaped answers.

A uniquely named module rather than conftest, so the test modules can import it even
when the core's and other plugins' tests run in the same pytest session.
"""

from __future__ import annotations

import base64

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f" * 30 + "t0"
API_KEY_SID = "SK" + "fedcba9876543210" * 2
API_KEY_SECRET = "sEcReT" + "k" * 26
BASE = "https://api.twilio.com"
MESSAGES_URL = f"{BASE}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
BALANCE_URL = f"{BASE}/2010-04-01/Accounts/{ACCOUNT_SID}/Balance.json"


def basic(user: str, password: str) -> str:
    """The Authorization header value requests sends for HTTP Basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


TOKEN_AUTH = basic(ACCOUNT_SID, AUTH_TOKEN)
KEY_AUTH = basic(API_KEY_SID, API_KEY_SECRET)


def error_body(code: int, text: str, status: int) -> dict[str, object]:
    """A Twilio error answer as its REST API returns it."""
    return {"code": code, "message": text, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}

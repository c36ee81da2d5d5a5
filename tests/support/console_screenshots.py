"""Screenshots of each console page into docs/console/: `python -m tests.support.console_screenshots`.

It starts the service under gunicorn with the fake Twilio (as the browser tests do),
sends a day's worth of messages to made-up numbers, reports their fates over signed
callbacks, signs in with headless Chromium and photographs each page.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS) not in sys.path:  # run as a module from the repository root
    sys.path.insert(0, str(TESTS))

import requests  # noqa: E402

from support.browser import chromium, sign_in  # noqa: E402
from support.fake_provider import FakeProvider, twilio_signature  # noqa: E402
from support.service import Service, twilio_env  # noqa: E402

OUT = TESTS.parent / "docs" / "console"
ADMIN_KEY = "screenshot-admin-key-0123456789"
API_KEYS = ("screenshot-key-shop-0123456789", "screenshot-key-crm-0123456789")
# (receiver, final status, error code, price): made-up numbers of three countries.
SENDS = [
    ("+14155550101", "delivered", None, "-0.00790"), ("+14155550102", "delivered", None, "-0.00790"),
    ("+14155550103", "delivered", None, "-0.00790"), ("+14155550104", "undelivered", "30003", "-0.00790"),
    ("+14155550105", "sent", None, None), ("+14155550106", "delivered", None, "-0.00790"),
    ("+447700900101", "delivered", None, "-0.04000"), ("+447700900102", "failed", "30005", None),
    ("+447700900103", "delivered", None, "-0.04000"), ("+33612345601", "delivered", None, "-0.07700"),
    ("+33612345602", "undelivered", "30003", "-0.07700"), ("+33612345603", None, None, None),
]

# (name, body, description): otp gets two versions, the second one current.
TEMPLATES = [
    ("otp", "Your code is ((code)).", "login one-time code"),
    ("otp", "Your Acme code is ((code)). It expires in 10 minutes.", "login one-time code"),
    ("shipped", "Hi ((first name)), your order ((order)) has shipped.", "order shipped"),
]


def report(fake: FakeProvider, sent: dict, status: str, error_code: str | None, price: str | None) -> None:
    """Post a signed Twilio status callback, with the price when given."""
    url = sent["StatusCallback"]
    fields = {"MessageSid": sent["_sid"], "SmsSid": sent["_sid"], "AccountSid": sent["_account"],
              "From": sent["From"], "To": sent["To"], "MessageStatus": status, "SmsStatus": status,
              "ApiVersion": "2010-04-01"}
    if error_code:
        fields["ErrorCode"] = error_code
    if price:
        fields.update(Price=price, PriceUnit="USD")
    answer = requests.post(url, data=fields, timeout=10,
                           headers={"X-Twilio-Signature": twilio_signature(fake.twilio_token, url, fields)})
    answer.raise_for_status()


def main() -> int:
    """Take the screenshots; returns the exit status."""
    OUT.mkdir(parents=True, exist_ok=True)
    fake = FakeProvider().start()
    env = {**twilio_env(fake.url), "CALLBACK_SECRET": "screenshot-callback-secret-0123",
           "ADMIN_API_KEYS": ADMIN_KEY, "API_KEYS": ",".join(API_KEYS), "TWILIO_EMPTY_BALANCE_CHECK": "true",
           "SEGMENT_BUDGETS": "US=500/24h,GB=200/24h,*=50/24h", "RATE_LIMIT_MAX_REQUESTS": "10000",
           "STATE_DIR": tempfile.mkdtemp(prefix="sms-screens-")}
    service = Service(env, workers=1)
    service.env["PUBLIC_BASE_URL"] = service.url
    with service:
        sids = []
        for index, (number, status, error_code, price) in enumerate(SENDS):
            key = API_KEYS[index % 2]
            answer = service.send({"sender": "Acme", "receiver": number, "body": "Your code is 123456"},
                                  headers={"Authorization": f"Bearer {key}"})
            answer.raise_for_status()
            sids.append(answer.json()["sid"])
            if status is not None:
                report(fake, fake.messages[-1], status, error_code, price)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        for number in ("+14155550177", "+447700900188"):
            requests.put(f"{service.url}/suppressions/{number}", headers=admin, timeout=10).raise_for_status()
        for name, body, description in TEMPLATES:
            requests.put(f"{service.url}/templates/{name}", headers=admin, timeout=10,
                         json={"body": body, "description": description}).raise_for_status()
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{service.url}/console/")
            page.screenshot(path=OUT / "sign-in.png")
            sign_in(page, service.url, ADMIN_KEY)
            page.screenshot(path=OUT / "overview.png", full_page=True)
            page.goto(f"{service.url}/console/messages")
            page.screenshot(path=OUT / "messages.png", full_page=True)
            page.goto(f"{service.url}/console/messages?status=undelivered")
            page.screenshot(path=OUT / "messages-filtered.png", full_page=True)
            page.goto(f"{service.url}/console/messages/{sids[3]}")
            page.screenshot(path=OUT / "message.png", full_page=True)
            page.goto(f"{service.url}/console/opt-outs?number=%2B14155550177")
            page.screenshot(path=OUT / "opt-outs.png", full_page=True)
            page.goto(f"{service.url}/console/templates/otp")
            page.fill("#personalisation", "code=123456")
            page.click("button:has-text('Preview')")
            page.screenshot(path=OUT / "templates.png", full_page=True)
    fake.stop()
    for path in sorted(OUT.glob("*.png")):
        print(path.relative_to(TESTS.parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""End to end: the operator console in a real headless Chromium against real gunicorn and the fake Twilio."""

from __future__ import annotations

import re
import time

import pytest
import requests
from support.browser import chromium, numbers_shown, sign_in
from support.payloads import fresh_receiver, message
from support.service import Service, twilio_env

pytestmark = pytest.mark.e2e

SECRET = "e2e-callback-secret-0123456789"
ADMIN_KEY = "e2e-console-admin-key-0123456789"
WRONG_KEY = "e2e-not-the-admin-key-9876543210"
PAGES = ("/console/", "/console/messages", "/console/messages/SM" + "0" * 32, "/console/opt-outs",
         "/console/opt-outs/export.csv", "/console/templates", "/console/templates/otp")


def console_service(fake_url: str, workers: int = 2) -> Service:
    env = {**twilio_env(fake_url), "CALLBACK_SECRET": SECRET, "ADMIN_API_KEYS": ADMIN_KEY,
           "TWILIO_EMPTY_BALANCE_CHECK": "true", "RATE_LIMIT_MAX_REQUESTS": "10000"}
    service = Service(env, workers=workers)
    service.env["PUBLIC_BASE_URL"] = service.url  # http on loopback: allowed for local runs
    return service


@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def service(fake_provider_server, fake_provider):
    with console_service(fake_provider_server.url) as started:
        yield started


def _figure(page, selector: str) -> str:
    return page.inner_text(selector).strip()


def test_the_operator_reads_the_day_filters_opts_out_and_signs_out(service, fake_provider, browser):
    to = [fresh_receiver() for _ in range(3)]
    sids = []
    for number in to:
        answer = service.send(message(receiver=number))
        assert answer.status_code == 200, answer.text
        sids.append(answer.json()["sid"])
    delivered, undelivered, waiting = fake_provider.messages[-3:]
    assert fake_provider.post_status(delivered, "delivered").status_code == 200
    assert fake_provider.post_status(undelivered, "undelivered", error_code="30003").status_code == 200
    assert waiting["To"] == to[2]

    context = browser.new_context()
    page = context.new_page()
    violations = []
    page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    shown: dict[str, str] = {}

    # Sign in: the overview of the day, with the test's sends.
    sign_in(page, service.url, ADMIN_KEY)
    assert page.url == f"{service.url}/console/"
    assert _figure(page, "[data-figure=total]") == "3"
    assert _figure(page, "[data-status=delivered]") == "1"
    assert _figure(page, "[data-status=undelivered]") == "1"
    assert _figure(page, "#sends td[data-status=queued]") == "1"
    assert _figure(page, "[data-figure=delivery-rate]") == "50.0%"
    assert _figure(page, "[data-error-code='30003']") == "1"
    assert _figure(page, "[data-segments=US]") == "3"
    assert _figure(page, "[data-figure=suppressed]") == "0"
    assert int(page.get_attribute("#chart rect.bar:last-of-type", "data-count")) == 3
    assert page.inner_text("#providers").count("twilio") == 1
    cookie, = [c for c in context.cookies() if c["name"] == "sms_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert cookie["path"] == "/console"
    assert 11.9 * 3600 < cookie["expires"] - time.time() <= 12 * 3600
    shown["overview"] = page.content()

    # The balance is read at most once a minute per worker, never per page view.
    calls = fake_provider.balance_calls
    for _ in range(4):
        page.reload()
        assert _figure(page, "[data-figure=total]") == "3"
    assert fake_provider.balance_calls - calls <= 2  # two workers, each at most once

    # Messages: by number (typed by the operator), through htmx, the URL following.
    page.click("nav >> text=Messages")
    assert page.locator("table.messages tbody tr[data-sid]").count() == 3
    assert {page.get_attribute(f"tr[data-sid='{sid}']", "data-sid") for sid in sids} == set(sids)
    page.fill("input[name=receiver]", to[1])
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r".*receiver=%2B.*"))
    page.wait_for_function("document.querySelectorAll('table.messages tbody tr[data-sid]').length === 1")
    assert page.get_attribute("table.messages tbody tr[data-sid]", "data-sid") == sids[1]
    row = page.inner_text(f"tr[data-sid='{sids[1]}']")
    assert f"+1***{to[1][-2:]}" in row and "undelivered" in row and "30003" in row and "key" in row
    page.reload()  # the pushed URL, rendered by the server alone: the typed number is in its form
    assert page.input_value("input[name=receiver]") == to[1]
    assert page.locator("table.messages tbody tr[data-sid]").count() == 1
    shown["messages by number"] = page.content()
    typed_by_number = to[1]

    # ... by status, the number cleared.
    page.fill("input[name=receiver]", "")
    page.select_option("select[name=status]", "delivered")
    page.click("form.filters button[type=submit]")
    page.wait_for_url(re.compile(r".*status=delivered.*"))
    page.wait_for_function("document.querySelectorAll('table.messages tbody tr[data-sid]').length === 1")
    assert page.get_attribute("table.messages tbody tr[data-sid]", "data-sid") == sids[0]
    page.reload()
    assert page.get_attribute("table.messages tbody tr[data-sid]", "data-sid") == sids[0]
    shown["messages by status"] = page.content()

    # One message's history.
    page.click(f"a:text('{sids[0]}')")
    page.wait_for_url(f"{service.url}/console/messages/{sids[0]}")
    assert _figure(page, "[data-field=status]") == "delivered"
    history = page.inner_text("table.history tbody")
    assert history.index("queued") < history.index("delivered")
    shown["message"] = page.content()

    # Opt-outs: look up, add (a send is refused meanwhile), remove (it goes again).
    person = fresh_receiver()
    page.click("nav >> text=Opt-outs")
    page.fill("#number", person)
    page.click("button:has-text('Look up')")
    assert page.get_attribute("#lookup", "data-on-list") == "no"
    page.click("button:has-text('Add to the list')")
    assert page.get_attribute("#lookup", "data-on-list") == "yes"
    assert "source: admin" in page.inner_text("#lookup")
    assert _figure(page, "[data-figure=suppressed]") == "1"
    shown["opt-outs"] = page.content()
    before = fake_provider.count()
    refused = service.send(message(receiver=person))
    assert refused.status_code == 403 and refused.json()["message"] == "receiver: this number has opted out"
    assert fake_provider.count() == before
    page.click("button:has-text('Remove from the list')")
    assert page.get_attribute("#lookup", "data-on-list") == "no"
    assert service.send(message(receiver=person)).status_code == 200
    assert fake_provider.count() == before + 1

    # Templates: the first version through the form, a preview, the list; the API reads what the form stored.
    name = f"e2e-otp-{int(time.time() * 1000) % 10**8}"
    page.click("nav >> text=Templates")
    page.wait_for_url(f"{service.url}/console/templates")
    page.fill("#name", name)
    page.fill("#body", "Your code is ((code)). It expires in ((minutes)) minutes.")
    page.fill("#description", "login code")
    page.click("button:has-text('Store version 1')")
    page.wait_for_url(f"{service.url}/console/templates/{name}")
    assert page.inner_text("[role=status]") == "Stored version 1."
    assert page.locator("table.versions tr[data-version]").count() == 1
    # The form starts from the latest version: sent back unchanged, it is the same content.
    page.click("button:has-text('Store a new version')")
    assert page.inner_text("[role=status]") == "Version 1 already has this content: no new version."
    page.fill("#personalisation", "code=482913\nminutes=10")
    page.click("button:has-text('Preview')")
    assert _figure(page, "[data-field=rendered]") == "Your code is 482913. It expires in 10 minutes."
    assert _figure(page, "[data-field=segments]") == "1" and _figure(page, "[data-field=encoding]") == "GSM-7"
    page.fill("#personalisation", "code=482913")
    page.click("button:has-text('Preview')")
    assert "minutes" in page.inner_text("#preview-error") and page.locator("#preview").count() == 0
    page.click("text=← Templates")
    page.wait_for_url(f"{service.url}/console/templates")
    row = page.locator(f"tr[data-template='{name}']")
    assert row.locator("[data-field=version]").inner_text() == "1" and "login code" in row.inner_text()
    stored = requests.get(f"{service.url}/templates/{name}", headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                          timeout=10)
    assert stored.status_code == 200 and stored.json()["body"].startswith("Your code is ((code))")
    assert "482913" not in service.log_text()  # the preview's text is never logged

    # Masked numbers only, except the one the operator typed on that page.
    everyone = [*to, person]
    assert numbers_shown(shown["overview"], everyone) == set()
    assert numbers_shown(shown["messages by number"], everyone) == {typed_by_number}
    assert numbers_shown(shown["messages by status"], everyone) == set()
    assert numbers_shown(shown["message"], everyone) == set()
    assert numbers_shown(shown["opt-outs"], everyone) == {person}
    assert "Your SMS body" not in "".join(shown.values())  # never a body
    assert violations == []  # nothing the CSP had to block: no inline script or style

    # Sign out: the browser is sent to sign-in, and the old cookie, replayed, opens nothing.
    old_cookie = cookie["value"]
    page.click("button:has-text('Sign out')")
    page.wait_for_url(f"{service.url}/console/sign-in")
    page.goto(f"{service.url}/console/")
    assert page.url == f"{service.url}/console/sign-in"
    for path in PAGES:
        replayed = requests.get(f"{service.url}{path}", cookies={"sms_console": old_cookie},
                                allow_redirects=False, timeout=10)
        assert replayed.status_code == 302, path
        assert replayed.headers["Location"] == "/console/sign-in"
    context.close()


def test_without_a_session_every_page_sends_to_sign_in(service):
    for path in PAGES:
        answer = requests.get(f"{service.url}{path}", allow_redirects=False, timeout=10)
        assert answer.status_code == 302, path
        assert answer.headers["Location"] == "/console/sign-in"
        assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    sign_in_page = requests.get(f"{service.url}/console/sign-in", timeout=10)
    assert sign_in_page.status_code == 200 and 'name="csrf_token"' in sign_in_page.text
    # A refusal of the console is a page; the API's stay JSON.
    missing = requests.get(f"{service.url}/console/no-such-page", timeout=10)
    assert missing.status_code == 404 and missing.headers["Content-Type"].startswith("text/html")
    api = requests.get(f"{service.url}/no-such-route", timeout=10)
    assert api.status_code == 404 and api.json()["statusCode"] == "404"


def test_a_wrong_key_is_refused_and_logged_without_the_key(service, browser):
    page = browser.new_page()
    sign_in(page, service.url, WRONG_KEY)
    assert page.url == f"{service.url}/console/sign-in"
    assert page.inner_text("[role=alert]") == "That is not an admin key."
    page.goto(f"{service.url}/console/messages")
    assert page.url == f"{service.url}/console/sign-in"  # still no session
    page.close()
    records = service.log_records()
    refusals = [r for r in records if r.get("message") == "console sign-in refused: not an admin key"]
    assert len(refusals) == 1
    assert WRONG_KEY not in service.log_text() and ADMIN_KEY not in service.log_text()


def test_a_form_without_its_csrf_token_is_refused(service):
    http = requests.Session()
    page = http.get(f"{service.url}/console/sign-in", timeout=10)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    refused = http.post(f"{service.url}/console/sign-in", data={"key": ADMIN_KEY}, allow_redirects=False,
                        timeout=10)
    assert refused.status_code == 400 and refused.headers["Content-Type"].startswith("text/html")
    assert "the csrf token is missing" in refused.text.lower()
    assert http.get(f"{service.url}/console/", allow_redirects=False, timeout=10).status_code == 302
    # Signed in, a form without the token changes nothing.
    signed = http.post(f"{service.url}/console/sign-in", data={"key": ADMIN_KEY, "csrf_token": token},
                       allow_redirects=False, timeout=10)
    assert signed.status_code == 302 and signed.headers["Location"] == "/console/"
    person = fresh_receiver()
    for data in ({"number": person}, {"number": person, "csrf_token": "forged." + token[7:]}):
        answer = http.post(f"{service.url}/console/opt-outs/add", data=data, allow_redirects=False, timeout=10)
        assert answer.status_code == 400 and "csrf" in answer.text.lower()
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert requests.get(f"{service.url}/suppressions/{person}", headers=admin, timeout=10).status_code == 404
    # ... and the API takes no CSRF token: it knows no cookies.
    assert requests.put(f"{service.url}/suppressions/{person}", headers=admin, timeout=10).status_code == 200

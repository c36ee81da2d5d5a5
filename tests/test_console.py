"""The operator console in process: sessions shared through the storage, cookie flags, CSV, the chart."""

from __future__ import annotations

import io
import re
import time

import pytest

from sms_service.app import create_app
from sms_service.console import auth
from sms_service.console.overview import sends_chart
from sms_service.status.listing import HOUR_MS

ADMIN_KEY = "console-admin-key-0123456789"


def console_app(storage_uri: str, **env: str):
    return create_app({"SERVICE_PROVIDER": "console", "ADMIN_API_KEYS": ADMIN_KEY, "STORAGE_URI": storage_uri,
                       "RATE_LIMIT_MAX_REQUESTS": "10000", **env})


def token(client, path: str = "/console/sign-in") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


def signed_in_client(app):
    client = app.test_client()
    answer = client.post("/console/sign-in", data={"key": ADMIN_KEY, "csrf_token": token(client)})
    assert answer.status_code == 302 and answer.headers["Location"] == "/console/"
    return client


def test_no_console_without_admin_keys():
    app = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"})
    for path in ("/console/", "/console/sign-in", "/console/static/htmx.min.js"):
        answer = app.test_client().get(path)
        assert answer.status_code == 404
        assert answer.json == {"statusCode": "404", "error": "Not Found", "message": "no such route"}


def test_every_worker_accepts_the_cookie_and_a_sign_out_ends_it_everywhere(shared_storage_uri):
    # Two apps on one storage: two workers (or replicas) of one deployment.
    first, second = console_app(shared_storage_uri), console_app(shared_storage_uri)
    assert first.secret_key and first.secret_key == second.secret_key
    client = signed_in_client(first)
    cookie = client.get_cookie("sms_console", path="/console")
    other = second.test_client()
    other.set_cookie("sms_console", cookie.value, path="/console")
    assert other.get("/console/").status_code == 200
    page = client.get("/console/").text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/console/sign-out", data={"csrf_token": csrf}).status_code == 302
    replayed = second.test_client()
    replayed.set_cookie("sms_console", cookie.value, path="/console")
    answer = replayed.get("/console/")
    assert answer.status_code == 302 and answer.headers["Location"] == "/console/sign-in"


def test_a_new_process_on_the_storage_keeps_the_key(tmp_path):
    uri = f"sqlite:///{tmp_path}/state/sms.db"
    key = console_app(uri).secret_key
    assert console_app(uri).secret_key == key
    assert console_app(f"sqlite:///{tmp_path}/other/sms.db").secret_key != key


@pytest.mark.parametrize(("base_url", "secure"), [("https://sms.example.com", True), ("http://127.0.0.1:3000", False)])
def test_the_cookie_flags(base_url, secure):
    app = console_app("memory://", PUBLIC_BASE_URL=base_url, CALLBACK_SECRET="console-callback-secret-0123456789")
    client = app.test_client()
    page = client.get("/console/sign-in", base_url=base_url).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    # Over https flask-wtf also wants a same-origin Referer, which the pages' policy lets through.
    header = client.post("/console/sign-in", data={"key": ADMIN_KEY, "csrf_token": csrf}, base_url=base_url,
                         headers={"Referer": f"{base_url}/console/sign-in"}).headers["Set-Cookie"]
    flags = [part.strip() for part in header.split(";")]
    assert "HttpOnly" in flags and "SameSite=Strict" in flags and "Path=/console" in flags
    assert ("Secure" in flags) is secure
    expires = re.search(r"Expires=([^;]+)", header).group(1)
    left = time.mktime(time.strptime(expires, "%a, %d %b %Y %H:%M:%S GMT")) - time.mktime(time.gmtime())
    assert 12 * 3600 - 60 < left <= 12 * 3600


def test_a_session_lapses_after_12_hours(monkeypatch):
    app = console_app("memory://")
    client = signed_in_client(app)
    assert client.get("/console/").status_code == 200
    now = time.time()
    monkeypatch.setattr(auth.time, "time", lambda: now + 12 * 3600 + 1)
    answer = client.get("/console/")
    assert answer.status_code == 302 and answer.headers["Location"] == "/console/sign-in"


def test_pages_carry_a_strict_policy_and_no_inline_script_or_style():
    client = signed_in_client(console_app("memory://"))
    for path in ("/console/", "/console/messages", "/console/opt-outs", "/console/sign-in"):
        answer = client.get(path)
        assert answer.status_code == 200, path
        policy = answer.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "unsafe-inline" not in policy
        assert answer.headers["Cache-Control"] == "no-store"
        html = answer.text
        assert "<style" not in html and " style=" not in html
        assert re.findall(r"<script[^>]*>", html) == ['<script src="/console/static/htmx.min.js" defer>']
    htmx = client.get("/console/static/htmx.min.js")
    assert htmx.status_code == 200 and b"htmx" in htmx.data[:40]


def test_an_htmx_request_gets_the_table_alone():
    client = signed_in_client(console_app("memory://"))
    whole = client.get("/console/messages?status=delivered")
    part = client.get("/console/messages?status=delivered", headers={"HX-Request": "true"})
    assert "<html" in whole.text and "<html" not in part.text
    assert 'class="messages"' in part.text


def test_a_bad_filter_is_named_and_a_bad_cursor_refused():
    client = signed_in_client(console_app("memory://"))
    answer = client.get("/console/messages?status=arrived&receiver=4155550100&since=yesterday")
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    for text in ("status: not a status", "number: not a full E.164 number", "since: not a time"):
        assert text in answer.text
    assert "cursor: not a cursor" in client.get("/console/messages?cursor=%%%").text


def test_csv_import_and_export():
    app = console_app("memory://")
    client = signed_in_client(app)
    csrf = token(client, "/console/opt-outs")
    upload = b"number,source\n+14155550101,inbound\nnot-a-number,admin\n+14155550102,\n"
    answer = client.post("/console/opt-outs/import", data={"csrf_token": csrf, "file": (
        io.BytesIO(upload), "list.csv")}, content_type="multipart/form-data", follow_redirects=True)
    assert "Imported 2 numbers (0 already on the list). 1 rows skipped, not an E.164 number: lines 3." \
        in answer.text
    assert "+14155550101" not in answer.text  # the page names lines, never numbers
    # A list larger than the API's 16 KiB request limit.
    many = "number\n" + "".join(f"+1415556{i:04d}\n" for i in range(2000))
    assert len(many) > 16 * 1024
    answer = client.post("/console/opt-outs/import", data={"csrf_token": csrf, "file": (
        io.BytesIO(many.encode()), "many.csv")}, content_type="multipart/form-data", follow_redirects=True)
    assert "Imported 2000 numbers (0 already on the list)." in answer.text
    export = client.get("/console/opt-outs/export.csv")
    assert export.mimetype == "text/csv" and "attachment" in export.headers["Content-Disposition"]
    rows = export.text.splitlines()
    assert rows[0] == "number,source,since"
    assert len(rows) == 1 + 2002
    assert sorted(row.split(",")[:2] for row in rows[1:])[:2] == [["+14155550101", "inbound"],
                                                                  ["+14155550102", "admin"]]


def test_the_overview_counts_and_shows_budgets():
    app = console_app("memory://", SEGMENT_BUDGETS="US=100/1h")
    api = app.test_client()
    for number in ("+14155550111", "+14155550112"):
        answer = api.post("/send", json={"sender": "Acme", "receiver": number, "body": "hello"})
        assert answer.status_code == 200, answer.text
    html = signed_in_client(app).get("/console/").text
    assert re.search(r'data-figure="total">2<', html)
    assert re.search(r'data-segments="US">2<', html)
    assert "100 segments per 1h" in html and "2 segments (2%)" in html
    assert "4155550111" not in html and "hello" not in html


def test_the_chart_has_24_hours_scaled_to_the_busiest():
    now = 1_796_700_000_000
    last = now // HOUR_MS * HOUR_MS
    chart = sends_chart({str(last): 4, str(last - 2 * HOUR_MS): 2, str(last - 30 * HOUR_MS): 9}, now)
    bars = chart["bars"]
    assert len(bars) == 24 and chart["top"] == 4  # the hour 30 h ago is outside
    assert [bar["count"] for bar in bars[-3:]] == [2, 0, 4]
    assert bars[-1]["height"] == 2 * bars[-3]["height"] > 0 and bars[-2]["height"] == 0
    assert bars[-1]["y"] + bars[-1]["height"] == chart["axis_y"]


def test_a_storage_that_does_not_answer_is_a_503_page():
    from support.ports import free_port

    app = console_app(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    assert not app.secret_key  # left to the first console request
    answer = app.test_client().get("/console/sign-in")
    assert answer.status_code == 503 and answer.mimetype == "text/html"
    assert "the storage does not answer (STORAGE_URI); try again in a moment" in answer.text
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    api = app.test_client().get("/messages")
    assert api.status_code == 503 and api.json["statusCode"] == "503"

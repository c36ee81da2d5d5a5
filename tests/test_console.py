"""The operator console in process: sessions shared through the storage, cookie flags, CSV, the chart."""

from __future__ import annotations

import html
import io
import re
import time

import pytest

from sms_service.app import create_app
from sms_service.console import auth
from sms_service.console.overview import sends_chart
from sms_service.schemas import TEMPLATE_NAME_RULE
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
    for path in ("/console/", "/console/messages", "/console/opt-outs", "/console/templates", "/console/sign-in"):
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


# -- templates ----------------------------------------------------------------------------

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _error(html: str, anchor: str) -> str:
    return re.search(rf'id="{anchor}">([^<]*)<', html).group(1)


def test_templates_are_listed_with_their_latest_version():
    app = console_app("memory://")
    api = app.test_client()
    assert api.put("/templates/otp", json={"body": "Code ((code))", "description": "login code"},
                   headers=ADMIN).status_code == 201
    assert api.put("/templates/otp", json={"body": "Your code: ((code))"}, headers=ADMIN).status_code == 201
    assert api.put("/templates/bye", json={"body": "Bye"}, headers=ADMIN).status_code == 201
    assert api.delete("/templates/bye", headers=ADMIN).status_code == 204
    client = signed_in_client(app)
    html = client.get("/console/").text
    assert '<a href="/console/templates" >Templates</a>' in html  # in the navigation
    page = client.get("/console/templates")
    assert page.status_code == 200
    rows = re.findall(r'<tr data-template="([^"]+)">(.*?)</tr>', page.text, re.S)
    assert [name for name, _ in rows] == ["bye", "otp"]
    bye, otp = (row for _, row in rows)
    assert 'data-field="version">2<' in otp and "live" in otp and 'href="/console/templates/otp"' in otp
    assert 'data-field="version">1<' in bye and "archived" in bye
    detail = client.get("/console/templates/otp").text
    assert re.findall(r'<tr data-version="(\d+)">', detail) == ["2", "1"]
    assert "Your code: ((code))" in detail and "Code ((code))" in detail
    assert client.get("/console/templates/nothing").status_code == 404


def test_a_new_version_through_the_form_and_the_same_content_again_stores_none():
    app = console_app("memory://")
    client = signed_in_client(app)
    csrf = token(client, "/console/templates")
    answer = client.post("/console/templates", data={
        "csrf_token": csrf, "name": "otp", "body": "Your code is ((code)).", "description": "",
        "providerIds": ""}, follow_redirects=True)
    assert answer.status_code == 200 and "Stored version 1." in answer.text
    form = {"csrf_token": csrf, "body": "Your code is ((code)). It expires in 10 minutes.",
            "description": "login code", "providerIds": '{"kaleyra": {"template_id": "1107161234567890123"}}'}
    answer = client.post("/console/templates/otp/versions", data=form, follow_redirects=True)
    assert answer.status_code == 200 and "Stored version 2." in answer.text
    stored = app.test_client().get("/templates/otp", headers=ADMIN).json
    assert stored["version"] == 2 and stored["description"] == "login code"
    assert stored["providerIds"] == {"kaleyra": {"template_id": "1107161234567890123"}}
    answer = client.post("/console/templates/otp/versions", data=form, follow_redirects=True)
    assert "Version 2 already has this content: no new version." in answer.text
    assert [v["version"] for v in app.test_client().get("/templates/otp", headers=ADMIN).json["versions"]] == [1, 2]


@pytest.mark.parametrize(("fields", "json_body"), [
    ({"body": "Your code is ((code"}, {"body": "Your code is ((code"}),
    ({"body": "Hi", "providerIds": "[1]"}, {"body": "Hi", "providerIds": [1]}),
    ({"body": "Hi", "providerIds": '{"kaleyra": {"template_id": ""}}'},
     {"body": "Hi", "providerIds": {"kaleyra": {"template_id": ""}}}),
])
def test_a_bad_version_is_refused_in_the_page_in_the_words_of_put(fields, json_body):
    app = console_app("memory://")
    api = app.test_client()
    assert api.put("/templates/otp", json={"body": "Code ((code))"}, headers=ADMIN).status_code == 201
    expected = api.put("/templates/otp", json=json_body, headers=ADMIN)
    assert expected.status_code == 400
    client = signed_in_client(app)
    csrf = token(client, "/console/templates/otp")
    answer = client.post("/console/templates/otp/versions", data={"csrf_token": csrf, **fields})
    assert answer.status_code == 400 and answer.mimetype == "text/html"
    assert html.unescape(_error(answer.text, "put-error")) == expected.json["message"]
    assert api.get("/templates/otp", headers=ADMIN).json["version"] == 1  # nothing stored
    # The first version of a new name, refused the same way, on the list page.
    answer = client.post("/console/templates", data={"csrf_token": csrf, "name": "new", **fields})
    assert answer.status_code == 400
    assert html.unescape(_error(answer.text, "put-error")) == expected.json["message"]
    answer = client.post("/console/templates", data={"csrf_token": csrf, "name": "Not A Name", "body": "Hi"})
    assert answer.status_code == 400
    assert _error(answer.text, "put-error") == f"name: {TEMPLATE_NAME_RULE}"
    answer = client.post("/console/templates/otp/versions",
                         data={"csrf_token": csrf, "body": "Hi", "providerIds": "{not json"})
    assert answer.status_code == 400 and _error(answer.text, "put-error") == "providerIds: not valid JSON"


def test_a_preview_shows_the_rendered_text_and_its_segments_and_logs_neither(caplog):
    app = console_app("memory://")
    api = app.test_client()
    assert api.put("/templates/otp", json={"body": "Your code is ((code)), ((name))."},
                   headers=ADMIN).status_code == 201
    client = signed_in_client(app)
    csrf = token(client, "/console/templates/otp")
    with caplog.at_level("DEBUG"):
        answer = client.post("/console/templates/otp/preview",
                             data={"csrf_token": csrf, "personalisation": "code=918273\nname = Zoe\n"})
        assert answer.status_code == 200
        assert re.search(r'data-field="rendered">Your code is 918273, Zoe.<', answer.text)
        assert re.search(r'data-field="segments">1<', answer.text)
        assert re.search(r'data-field="encoding">GSM-7<', answer.text)
        answer = client.post("/console/templates/otp/preview", data={
            "csrf_token": csrf, "personalisation": '{"code": "918273", "name": "你好 ' + "x" * 70 + '"}'})
        assert re.search(r'data-field="segments">2<', answer.text)
        assert re.search(r'data-field="encoding">UCS-2<', answer.text)
    assert "918273" not in caplog.text and "Your code is" not in caplog.text
    assert "918273" not in client.get("/console/templates/otp").text  # shown in the preview answer only
    answer = client.post("/console/templates/otp/preview", data={"csrf_token": csrf, "personalisation": "code=1"})
    assert answer.status_code == 400
    assert "personalisation:" in _error(answer.text, "preview-error") and "name" in _error(answer.text,
                                                                                            "preview-error")
    answer = client.post("/console/templates/otp/preview", data={"csrf_token": csrf, "personalisation": "code"})
    assert answer.status_code == 400
    assert _error(answer.text, "preview-error") == "personalisation: line 1 is not key=value"


def test_the_template_forms_need_their_csrf_token_and_the_pages_a_session():
    app = console_app("memory://")
    api = app.test_client()
    assert api.put("/templates/otp", json={"body": "Code ((code))"}, headers=ADMIN).status_code == 201
    client = signed_in_client(app)
    token(client, "/console/templates")  # the session holds a token: the forged one is compared with it
    for path, data in (("/console/templates", {"name": "new", "body": "Hi"}),
                       ("/console/templates/otp/versions", {"body": "Other ((code))"}),
                       ("/console/templates/otp/preview", {"personalisation": "code=1"})):
        for refused in (data, {**data, "csrf_token": "forged"}):
            answer = client.post(path, data=refused)
            assert answer.status_code == 400, path
            assert re.search(r"the form was refused: the csrf token is (missing|invalid)", answer.text.lower())
            assert 'data-field="rendered"' not in answer.text
    assert api.get("/templates/otp", headers=ADMIN).json["version"] == 1
    assert api.get("/templates/new", headers=ADMIN).status_code == 404
    stranger = app.test_client()
    for path in ("/console/templates", "/console/templates/otp"):
        answer = stranger.get(path)
        assert answer.status_code == 302 and answer.headers["Location"] == "/console/sign-in"
    csrf = token(stranger)  # a token, but no session
    answer = stranger.post("/console/templates/otp/versions", data={"csrf_token": csrf, "body": "Other"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/console/sign-in"
    assert api.get("/templates/otp", headers=ADMIN).json["version"] == 1

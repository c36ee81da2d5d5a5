"""Twilio signatures are checked against the callback URL exactly as the service gave it (issue 22, 1).

PUBLIC_BASE_URL is validated and normalised once, in the configuration; the URL asked
for in `StatusCallback` and the URL the signature is checked against are one string.
"""

from __future__ import annotations

from urllib.parse import unquote_plus, urlencode

import pytest
import responses
from support.payloads import message
from support.service import TWILIO_SID, TWILIO_TOKEN
from test_status import TWILIO_URL, sign, status_fields

from sms_service.app import create_app
from sms_service.config import load_settings


def _app(public: str):
    return create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                       "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "STORAGE_URI": "memory://",
                       "PUBLIC_BASE_URL": public})


def _send(client, sid: str) -> str:
    """Send one message; return the StatusCallback the fake Twilio was given."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(TWILIO_URL, status=201, json={"sid": sid, "status": "queued", "num_segments": "1",
                                                "date_created": "Thu, 26 Nov 2026 08:00:00 +0000"})
        answer = client.post("/send", json=message())
        sent = dict(pair.split("=", 1) for pair in mock.calls[0].request.body.split("&"))
    assert answer.status_code == 200, answer.get_json()
    return unquote_plus(sent["StatusCallback"])


def _post(client, path: str, fields: dict[str, str], signed_url: str, query: str = ""):
    return client.post(path + (f"?{query}" if query else ""), data=urlencode(fields),
                       headers={"X-Twilio-Signature": sign(signed_url, fields)},
                       content_type="application/x-www-form-urlencoded")


@pytest.mark.parametrize("public", [
    "https://SMS.Example.com",                 # an upper-case host
    "https://SMS.Example.COM/Relay/V1/",       # a path prefix (case kept) and a trailing slash
    "https://sms.example.com:8443/prefix",     # a port of its own
])
def test_a_callback_signed_over_the_url_given_to_twilio_is_accepted(public):
    client = _app(public).test_client()
    sid = "SM" + "a" * 32
    given = _send(client, sid)
    assert given == public.rstrip("/") + "/callbacks/twilio/status"  # exactly as written, no slash doubled
    # Twilio signs the URL it was given, character for character.
    path = "/" + given.split("/", 3)[3]
    path = path[path.index("/callbacks/"):]
    answer = _post(client, path, status_fields(sid, "delivered"), given)
    assert answer.status_code == 200, answer.get_json()
    assert client.get(f"/messages/{sid}").get_json()["status"] == "delivered"


def test_a_callback_signed_over_a_lower_cased_host_is_refused():
    # The URL given was upper-case: a signature over another spelling is not Twilio's.
    client = _app("https://SMS.Example.com").test_client()
    sid = "SM" + "b" * 32
    _send(client, sid)
    answer = _post(client, "/callbacks/twilio/status", status_fields(sid, "delivered"),
                   "https://sms.example.com/callbacks/twilio/status")
    assert answer.status_code == 403


@pytest.mark.parametrize("signed", ["https://SMS.Example.com/callbacks/twilio/status",
                                    "https://SMS.Example.com:443/callbacks/twilio/status"])
def test_with_and_without_the_default_port(signed):
    # SPEC 10: Twilio may or may not write the default port; both are checked.
    for public in ("https://SMS.Example.com", "https://SMS.Example.com:443"):
        client = _app(public).test_client()
        sid = "SM" + "c" * 32
        _send(client, sid)
        answer = _post(client, "/callbacks/twilio/status", status_fields(sid, "sent"), signed)
        assert answer.status_code == 200, (public, signed)


def test_a_query_string_is_part_of_the_signed_url():
    client = _app("https://SMS.Example.com/x").test_client()
    sid = "SM" + "d" * 32
    _send(client, sid)
    url = "https://SMS.Example.com/x/callbacks/twilio/status?Tenant=A%2FB&n=1"
    assert _post(client, "/callbacks/twilio/status", status_fields(sid, "sent"), url,
                 query="Tenant=A%2FB&n=1").status_code == 200
    # The same signature for a request without that query is not Twilio's.
    fields = status_fields(sid, "delivered")
    answer = client.post("/callbacks/twilio/status", data=urlencode(fields),
                         headers={"X-Twilio-Signature": sign(url, fields)},
                         content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 403


def test_inbound_stop_with_an_upper_case_host():
    client = _app("https://SMS.Example.com").test_client()
    fields = {"MessageSid": "SM" + "e" * 32, "AccountSid": TWILIO_SID, "From": "+15558675310",
              "To": "+15017122661", "Body": "STOP"}
    answer = _post(client, "/callbacks/twilio/inbound", fields,
                   "https://SMS.Example.com/callbacks/twilio/inbound")
    assert answer.status_code == 200


@pytest.mark.parametrize(("given", "normalised"), [
    ("https://SMS.Example.com/", "https://SMS.Example.com"),
    ("HTTPS://SMS.Example.com/a//", "https://SMS.Example.com/a"),
    ("https://sms.example.com:443/p", "https://sms.example.com:443/p"),
])
def test_public_base_url_is_normalised_once_in_the_configuration(given, normalised):
    settings = load_settings({"SERVICE_PROVIDER": "console", "PUBLIC_BASE_URL": given})
    assert settings.public_base_url == normalised

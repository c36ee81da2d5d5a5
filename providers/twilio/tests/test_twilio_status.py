"""Twilio status callbacks: X-Twilio-Signature (both variants), StatusCallback, the status table."""

from __future__ import annotations

import json

import pytest
import responses
from responses import matchers
from twilio_fakes import ACCOUNT_SID, API_KEY_SECRET, AUTH_TOKEN, KEY_AUTH, MESSAGES_URL

from sms_service.exceptions import CallbackRefused, ConfigError
from sms_service.provider import CallbackRequest, Message, StatusUpdate
from sms_service_twilio import signature
from sms_service_twilio.provider import STATUS_MAP, TwilioProvider

CALLBACK = "https://sms.example.com/callbacks/twilio/status"
MESSAGE_SID = "SM" + "ab12" * 8

# Twilio's published example (twilio-python tests/unit/test_request_validator.py).
PUBLISHED_TOKEN = "12345"
PUBLISHED_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PUBLISHED_PARAMS = {"CallSid": ["CA1234567890ABCDE"], "Digits": ["1234"], "From": ["+14158675309"],
                    "To": ["+18005551212"], "Caller": ["+14158675309"]}
PUBLISHED_BODY = b'{"property": "value", "boolean": true}'
PUBLISHED_BODY_HASH = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"


# -- the signature, against Twilio's own vectors -------------------------------------


def test_published_vector_signature():
    expected = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert signature.compute(PUBLISHED_TOKEN, PUBLISHED_URL, PUBLISHED_PARAMS) == expected
    assert signature.is_valid(PUBLISHED_TOKEN, PUBLISHED_URL, PUBLISHED_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_published_vector_with_repeated_parameters():
    params = {"Sid": ["CA123"], "SidAccount": ["AC123"], "Digits": ["5678", "1234"]}
    assert signature.compute(PUBLISHED_TOKEN, PUBLISHED_URL, params) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="


@pytest.mark.parametrize(("url", "expected"), [
    # An explicit port is dropped (https, http) ...
    (PUBLISHED_URL.replace(".com", ".com:1234"), "RSOYDt4T1cUTdK1PDd93/VVr8B8="),
    (PUBLISHED_URL.replace(".com", ".com:1234").replace("https", "http"), "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="),
    # ... and a signature over the URL with its default port added is accepted.
    (PUBLISHED_URL, "kvajT1Ptam85bY51eRf/AJRuM3w="),
    (PUBLISHED_URL.replace("https", "http"), "0ZXoZLH/DfblKGATFgpif+LLRf4="),
])
def test_published_vectors_port_variants(url, expected):
    assert signature.is_valid(PUBLISHED_TOKEN, url, PUBLISHED_PARAMS, expected)


def test_published_vector_json_body():
    assert signature.body_hash(PUBLISHED_BODY) == PUBLISHED_BODY_HASH
    url = f"{PUBLISHED_URL}&bodySHA256={PUBLISHED_BODY_HASH}"
    assert signature.is_valid(PUBLISHED_TOKEN, url, {}, "a9nBmqA0ju/hNViExpshrM61xv4=", body=PUBLISHED_BODY)
    # Another body under the same URL and signature fails on the hash.
    assert not signature.is_valid(PUBLISHED_TOKEN, url, {}, "a9nBmqA0ju/hNViExpshrM61xv4=",
                                  body=PUBLISHED_BODY + b" ")


@pytest.mark.parametrize("forged", [
    None, "", "RSOYDt4T1cUTdK1PDd93/VVr8B8", "rsoydt4t1cutdk1pdd93/vvr8b8=", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "RSOYDt4T1cUTdK1PDd93/VVr8B8=\n",
])
def test_forged_or_missing_signatures_fail(forged):
    assert not signature.is_valid(PUBLISHED_TOKEN, PUBLISHED_URL, PUBLISHED_PARAMS, forged)


def test_order_of_parameters_does_not_matter_but_every_value_does():
    reordered = dict(reversed(list(PUBLISHED_PARAMS.items())))
    assert signature.compute(PUBLISHED_TOKEN, PUBLISHED_URL, reordered) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    tampered = {**PUBLISHED_PARAMS, "To": ["+18005551213"]}
    assert not signature.is_valid(PUBLISHED_TOKEN, PUBLISHED_URL, tampered, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    added = {**PUBLISHED_PARAMS, "Extra": [""]}
    assert not signature.is_valid(PUBLISHED_TOKEN, PUBLISHED_URL, added, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not signature.is_valid("12346", PUBLISHED_URL, PUBLISHED_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    # The URL is signed too: another path or query is another signature.
    for url in (PUBLISHED_URL.replace("myapp", "yourapp"), PUBLISHED_URL + "&baz=3"):
        assert not signature.is_valid(PUBLISHED_TOKEN, url, PUBLISHED_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_a_port_other_than_the_one_signed_fails():
    signed = signature.compute(PUBLISHED_TOKEN, "https://mycompany.com:8443/x", {})
    assert signature.is_valid(PUBLISHED_TOKEN, "https://mycompany.com:8443/x", {}, signed)
    assert not signature.is_valid(PUBLISHED_TOKEN, "https://mycompany.com:9443/x", {}, signed)


def test_json_without_body_hash_in_the_url_fails():
    url = PUBLISHED_URL
    sig = signature.compute(PUBLISHED_TOKEN, url, {})
    assert not signature.is_valid(PUBLISHED_TOKEN, url, {}, sig, body=PUBLISHED_BODY)


# -- the plugin ------------------------------------------------------------------------


@pytest.fixture
def provider(token_env):
    p = TwilioProvider(token_env, timeout=5, callback_url=CALLBACK)
    yield p
    p.close()


def form_callback(fields: dict[str, str], token: str = AUTH_TOKEN, url: str = CALLBACK,
                  sign_url: str | None = None, headers: dict | None = None) -> CallbackRequest:
    form = {name: (value,) for name, value in fields.items()}
    sig = signature.compute(token, sign_url or url, form)
    return CallbackRequest(url=url, headers={"x-twilio-signature": sig, **(headers or {})},
                           body=b"<form>", form=form)


def fields(status: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": MESSAGE_SID, "SmsSid": MESSAGE_SID, "AccountSid": ACCOUNT_SID,
            "From": "+15005550006", "To": "+15558675310", "MessageStatus": status, "SmsStatus": status,
            "ApiVersion": "2010-04-01", **extra}


@pytest.mark.parametrize(("word", "status"), [
    ("accepted", "queued"), ("scheduled", "queued"), ("queued", "queued"),
    ("sending", "sent"), ("sent", "sent"),
    ("delivered", "delivered"), ("read", "delivered"),
    ("undelivered", "undelivered"),
    ("failed", "failed"), ("canceled", "failed"),
    ("partially_delivered", "sent"),
    ("some_new_word", "sent"),
])
def test_status_table(provider, word, status):
    extra = {"ErrorCode": "30003"} if word in ("failed", "undelivered") else {}
    updates = provider.parse_status_callback(form_callback(fields(word, **extra)))
    assert updates == [StatusUpdate(sid=MESSAGE_SID, status=status, provider_status=word,
                                    error_code=extra.get("ErrorCode"), receiver="+15558675310")]


def test_status_table_covers_every_documented_word():
    documented = {"queued", "sending", "sent", "failed", "delivered", "undelivered", "receiving", "received",
                  "accepted", "scheduled", "read", "partially_delivered", "canceled"}
    assert documented - set(STATUS_MAP) == {"receiving", "received"}


def test_inbound_statuses_are_no_update(provider):
    assert provider.parse_status_callback(form_callback(fields("received"))) == []


def test_unknown_fields_are_signed_and_accepted(provider):
    updates = provider.parse_status_callback(form_callback(fields("delivered", RawDlrDoneDate="2611260812",
                                                                  NewField="x")))
    assert updates[0].status == "delivered"


def test_port_variants_of_the_public_url(provider):
    with_port = CALLBACK.replace(".com", ".com:443")
    assert provider.parse_status_callback(form_callback(fields("sent"), sign_url=with_port))[0].status == "sent"


@pytest.mark.parametrize("tamper", ["token", "missing", "value", "url", "account"])
def test_forged_callbacks_are_refused(provider, tamper):
    request = form_callback(fields("delivered"), token="x" * 32 if tamper == "token" else AUTH_TOKEN)
    if tamper == "missing":
        request = CallbackRequest(url=request.url, headers={}, body=request.body, form=request.form)
    elif tamper == "value":
        request = CallbackRequest(url=request.url, headers=request.headers, body=request.body,
                                  form={**request.form, "MessageStatus": ("failed",)})
    elif tamper == "url":
        request = CallbackRequest(url=CALLBACK.replace("sms.example.com", "evil.example.com"),
                                  headers=request.headers, body=request.body, form=request.form)
    elif tamper == "account":
        request = form_callback(fields("delivered", AccountSid="AC" + "9" * 32))
    with pytest.raises(CallbackRefused):
        provider.parse_status_callback(request)


def test_json_callback_with_body_hash(provider):
    body = json.dumps(fields("delivered")).encode()
    url = f"{CALLBACK}?bodySHA256={signature.body_hash(body)}"
    sig = signature.compute(AUTH_TOKEN, url, {})
    request = CallbackRequest(url=url, headers={"x-twilio-signature": sig}, body=body, json=json.loads(body))
    assert provider.parse_status_callback(request)[0].status == "delivered"
    other = body.replace(b"delivered", b"failed")
    forged = CallbackRequest(url=url, headers={"x-twilio-signature": sig}, body=other, json=json.loads(other))
    with pytest.raises(CallbackRefused):
        provider.parse_status_callback(forged)


def test_a_signed_callback_without_a_sid_is_unreadable(provider):
    with pytest.raises(ValueError):
        provider.parse_status_callback(form_callback({"AccountSid": ACCOUNT_SID, "MessageStatus": "sent"}))


def test_send_asks_for_status_callbacks(provider, http, message):
    with_callback = Message(**{**vars(message), "status_callback": CALLBACK})
    http.add(responses.POST, MESSAGES_URL, status=201, json={"sid": MESSAGE_SID, "status": "queued"},
             match=[matchers.urlencoded_params_matcher({
                 "To": message.receiver, "From": message.sender, "Body": message.body,
                 "StatusCallback": CALLBACK})])
    assert provider.send(with_callback).sid == MESSAGE_SID


def test_api_key_without_auth_token_cannot_verify_callbacks(key_env):
    with pytest.raises(ConfigError) as info:
        TwilioProvider(key_env, timeout=5, callback_url=CALLBACK)
    assert str(info.value).startswith("TWILIO_AUTH_TOKEN")
    assert API_KEY_SECRET not in str(info.value)
    TwilioProvider(key_env, timeout=5).close()  # without callbacks the key alone is fine


def test_api_key_sends_and_auth_token_verifies_when_callbacks_are_on(key_env, http, message):
    provider = TwilioProvider({**key_env, "TWILIO_AUTH_TOKEN": AUTH_TOKEN}, timeout=5, callback_url=CALLBACK)
    http.add(responses.POST, MESSAGES_URL, status=201, json={"sid": MESSAGE_SID, "status": "queued"},
             match=[matchers.header_matcher({"Authorization": KEY_AUTH})])
    provider.send(message)
    assert provider.parse_status_callback(form_callback(fields("sent")))[0].status == "sent"
    assert AUTH_TOKEN not in repr(provider) + str(vars(provider))
    provider.close()


def test_the_host_keeps_its_case_in_both_port_variants():
    # Twilio signs the URL as it was given: lower-casing the host made every check fail.
    url = "https://SMS.Example.com/Prefix/callbacks/twilio/status?a=B"
    assert signature.url_variants(url) == (url, url.replace(".com/", ".com:443/"))
    assert signature.url_variants("http://[::1]:8080/x") == ("http://[::1]/x", "http://[::1]:8080/x")
    signed = signature.compute(PUBLISHED_TOKEN, url, PUBLISHED_PARAMS)
    assert signature.is_valid(PUBLISHED_TOKEN, url, PUBLISHED_PARAMS, signed)
    assert not signature.is_valid(PUBLISHED_TOKEN, url.lower(), PUBLISHED_PARAMS, signed)

"""Provider error texts lose the callback URL, its token and every configured secret (issue 22, 7).

A Kaleyra error that echoes the callback URL would otherwise hand the CALLBACK_SECRET
token to an API caller, who could then forge delivery reports and opt-outs.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import pytest
import responses
from support.payloads import message
from support.service import KALEYRA_KEY, KALEYRA_SID

from sms_service.app import create_app
from sms_service.config import load_settings
from sms_service.dispatch import Dispatcher
from sms_service.exceptions import MessageRejected, ProviderUnavailable
from sms_service.failover import build_failover
from sms_service.guards import Guards
from sms_service.provider import Message, Provider
from sms_service.scrub import Scrubber
from sms_service.status.callbacks import callback_token
from sms_service.storage.memory import MemoryStorage

PUBLIC = "https://sms.example.com"
SECRET = "s3cret-callback-secret-0123456789"
KALEYRA_URL = f"https://api.kaleyra.io/v1/{KALEYRA_SID}/messages"
TOKEN = callback_token(SECRET, "kaleyra")
CALLBACK = f"{PUBLIC}/callbacks/kaleyra/status?token={TOKEN}"


def _kaleyra_client():
    return create_app({"SERVICE_PROVIDER": "kaleyra", "KALEYRA_SID": KALEYRA_SID, "KALEYRA_API_KEY": KALEYRA_KEY,
                       "STORAGE_URI": "memory://", "PUBLIC_BASE_URL": PUBLIC,
                       "CALLBACK_SECRET": SECRET}).test_client()


def _assert_clean(text: str) -> None:
    for leaked in (TOKEN, SECRET, KALEYRA_KEY, "/callbacks/kaleyra/status", quote(CALLBACK, safe="")):
        assert leaked not in text, leaked


ECHOES = {
    "plain": f"invalid callback {CALLBACK}",
    "json-escaped": "invalid callback " + json.dumps({"url": CALLBACK})[1:-1].replace("/", "\\/"),
    "url-encoded": f"invalid callback {quote(CALLBACK, safe='')}",
    "token alone": f"token {TOKEN} refused",
    "api key": f"key {KALEYRA_KEY} is not valid for this route",
}


@pytest.mark.parametrize("echo", ECHOES.values(), ids=ECHOES.keys())
@pytest.mark.parametrize("status", [400, 500])
def test_a_kaleyra_error_echoing_the_callback_url_reaches_neither_caller_nor_log(echo, status, caplog):
    client = _kaleyra_client()
    caplog.set_level(logging.DEBUG)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(KALEYRA_URL, status=status, json={"code": "E413", "message": echo})
        answer = client.post("/send", json=message())
    assert answer.status_code in (400, 502)
    text = answer.get_data(as_text=True)
    if status == 400:  # a rejection passes the provider's reason on: the reason stays, the secret goes
        assert "invalid callback" in text or "refused" in text or "not valid" in text
        assert "[redacted]" in text
    _assert_clean(text)
    _assert_clean(caplog.text)


def test_the_kaleyra_plugin_scrubs_its_own_messages():
    from sms_service_kaleyra.provider import KaleyraProvider

    provider = KaleyraProvider({"KALEYRA_API_KEY": KALEYRA_KEY, "KALEYRA_SID": KALEYRA_SID}, timeout=5,
                               callback_url=CALLBACK)
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(KALEYRA_URL, status=200, json={"error": {"callback": f"bad url {CALLBACK}"}})
        with pytest.raises(MessageRejected) as info:
            provider.send(_kaleyra_message())
    assert "bad url" in info.value.message
    _assert_clean(info.value.message)
    assert TOKEN not in str(info.value)


def _kaleyra_message():
    return Message(sender="KLRHXA", receiver="+917499623342", body="x", num_segments=1, encoding="GSM-7",
                   status_callback=CALLBACK)


class Careless(Provider):
    """A third-party plugin that puts whatever it was given into its errors."""

    def __init__(self, env, *, timeout, callback_url=None):
        super().__init__(env, timeout=timeout, callback_url=callback_url)

    def send(self, message):
        raise ProviderUnavailable(f"upstream said no to {message.status_callback} (secret {SECRET}, "
                                  f"key tok-0123456789-abcdef)")

    def balance(self):
        raise ProviderUnavailable(f"balance refused for {self.callback_url}")


def test_the_core_scrubs_every_plugin_error():
    settings = load_settings({"SERVICE_PROVIDER": "careless", "PUBLIC_BASE_URL": PUBLIC, "CALLBACK_SECRET": SECRET,
                              "STORAGE_URI": "memory://", "CARELESS_API_TOKEN": "tok-0123456789-abcdef"})
    storage = MemoryStorage()
    provider = Careless({}, timeout=1, callback_url=CALLBACK.replace("kaleyra", "careless"))
    failover = build_failover(settings, {"careless": provider}, storage, None)
    dispatcher = Dispatcher("careless", provider, Guards(settings, storage), None, failover)
    with pytest.raises(ProviderUnavailable) as info:
        dispatcher.send("ACME", "+447400123456", "hi")
    text = info.value.message
    assert text.startswith("upstream said no to ")
    assert "/callbacks/careless/status" not in text and SECRET not in text
    assert "tok-0123456789-abcdef" not in text  # CARELESS_API_TOKEN: a provider variable named a token
    assert callback_token(SECRET, "careless") not in text and str(info.value) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("see https://h.example/cb?token=abc123def456 now", "see [redacted] now"),
    ("see https:\\/\\/h.example\\/cb?token=abc123def456", "see [redacted]"),
    ("see https%3A%2F%2Fh.example%2Fcb%3Ftoken%3Dabc123def456", "see [redacted]"),
    ("path https://h.example/cb alone", "path [redacted] alone"),
    ("just abc123def456", "just [redacted]"),
    ("nothing here", "nothing here"),
])
def test_the_scrubber(text, expected):
    scrubber = Scrubber(["https://h.example/cb?token=abc123def456"])
    assert scrubber.scrub(text) == expected


def test_the_scrubber_ignores_short_and_empty_texts():
    # A two-letter "secret" would eat every word it is part of.
    assert Scrubber(["", "ab", None]).scrub("abc ab") == "abc ab"


def test_a_provider_code_holding_the_token_is_scrubbed_too():
    from sms_service.scrub import scrub_error

    exc = MessageRejected(f"no {TOKEN}", provider_code=f"E-{TOKEN}")
    scrub_error(exc, Scrubber([CALLBACK]))
    assert (exc.message, exc.provider_code, str(exc)) == ("no [redacted]", "E-[redacted]", "no [redacted]")

"""Plugins get the canonical E.164 number the guards judged, not the caller's spelling (issue 22, 6)."""

from __future__ import annotations

import datetime as dt

import pytest

from sms_service.config import load_settings
from sms_service.dispatch import Dispatcher
from sms_service.exceptions import ReceiverTooSoon
from sms_service.failover import Failover, Route
from sms_service.guards import Guards
from sms_service.provider import Provider, Receipt
from sms_service.schemas import load_send_request
from sms_service.storage.memory import MemoryStorage


class Recording(Provider):
    """Accepts every message and keeps it."""

    def __init__(self) -> None:
        super().__init__({}, timeout=1)
        self.messages = []

    def send(self, message):
        self.messages.append(message)
        return Receipt(sid=f"SM{len(self.messages)}", status="queued", date_event=dt.datetime.now(dt.UTC))


def _dispatcher(provider: Provider) -> Dispatcher:
    settings = load_settings({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"})
    return Dispatcher("rec", provider, Guards(settings, MemoryStorage()), None,
                      Failover([Route("rec", provider)]))


def test_the_plugin_gets_the_canonical_number():
    written = "+4407911123456"  # a national trunk 0 kept after the country code
    assert load_send_request({"sender": "ACME", "receiver": written, "body": "hi"})["receiver"] == written
    provider = Recording()
    answer, fields = _dispatcher(provider).send("ACME", written, "hi")
    assert answer["sid"] == "SM1"
    assert [m.receiver for m in provider.messages] == ["+447911123456"]
    assert fields["receiver"] == "+44***56"


def test_the_two_spellings_are_one_receiver_for_the_delay():
    provider = Recording()
    dispatcher = _dispatcher(provider)
    dispatcher.send("ACME", "+447911123456", "hi")
    with pytest.raises(ReceiverTooSoon):
        dispatcher.send("ACME", "+4407911123456", "hi")
    assert len(provider.messages) == 1

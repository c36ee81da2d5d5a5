"""Shared fixtures for the Telnyx provider tests: a provider, a strict HTTP fake, a message."""

from __future__ import annotations

import pytest
import responses
from telnyx_fakes import API_KEY, CALLBACK, PUBLIC_KEY

from sms_service.provider import Message
from sms_service_telnyx.provider import TelnyxProvider


@pytest.fixture
def env() -> dict[str, str]:
    """Telnyx credentials and the test key pair's public half, with a key the provider must ignore."""
    return {"TELNYX_API_KEY": API_KEY, "TELNYX_PUBLIC_KEY": PUBLIC_KEY, "PLIVO_AUTH_TOKEN": "not-ours"}


@pytest.fixture
def provider(env):
    """A provider with status callbacks on."""
    p = TelnyxProvider(env, timeout=5, callback_url=CALLBACK)
    yield p
    p.close()


@pytest.fixture
def http():
    """A fake Telnyx that fails the test on any unexpected or missing call."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def message() -> Message:
    """A message whose body needs real JSON escaping (quotes, newline, non-ASCII)."""
    return Message(sender="+14156667777", receiver="+14155550123",
                   body='Code: "1234" & more\nÀ bientôt 🙂', num_segments=1, encoding="UCS-2")

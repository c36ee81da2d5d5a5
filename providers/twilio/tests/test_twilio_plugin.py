"""The distribution as a plugin: entry point, base class, optional balance, closing."""

from __future__ import annotations

from importlib.metadata import entry_points

from sms_service.provider import ENTRY_POINT_GROUP, Provider
from sms_service_twilio.provider import TwilioProvider


def test_entry_point_twilio_resolves_to_the_provider():
    found = entry_points(group="sms_service.providers").select(name="twilio")
    assert len(found) == 1
    (entry_point,) = found
    assert entry_point.value == "sms_service_twilio.provider:TwilioProvider"
    assert entry_point.load() is TwilioProvider
    assert ENTRY_POINT_GROUP == "sms_service.providers"


def test_is_a_provider_with_balance():
    assert issubclass(TwilioProvider, Provider)
    assert TwilioProvider.supports_balance() is True


def test_timeout_is_kept_and_close_can_be_called_twice(token_env):
    provider = TwilioProvider(token_env, timeout=2.5)
    assert provider.timeout == 2.5
    provider.close()
    provider.close()

"""A plugin states the plugin API it was built for; an incompatible one fails at load in one line."""

from __future__ import annotations

import pytest

from sms_service import __version__
from sms_service.console_provider import ConsoleProvider
from sms_service.exceptions import ProviderLoadError
from sms_service.plugin_loader import check_plugin_api
from sms_service.provider import PLUGIN_API, Provider


def plugin(api):
    class Built(Provider):
        PLUGIN_API = api

        def send(self, message):
            raise NotImplementedError

    return Built


@pytest.mark.parametrize("api", [None, (PLUGIN_API[0], 0), PLUGIN_API])
def test_compatible_plugins_load(api):
    check_plugin_api("demo", plugin(api))


@pytest.mark.parametrize("api", [(PLUGIN_API[0] + 1, 0), (PLUGIN_API[0], PLUGIN_API[1] + 1), (0, 9)])
def test_an_incompatible_plugin_fails_with_one_clear_line(api):
    with pytest.raises(ProviderLoadError) as caught:
        check_plugin_api("demo", plugin(api))
    text = caught.value.message
    assert "\n" not in text
    assert f"built for plugin API {api[0]}.{api[1]}" in text
    assert f"sms-service {__version__} provides plugin API {PLUGIN_API[0]}.{PLUGIN_API[1]}" in text


@pytest.mark.parametrize("api", ["1.0", (1,), (1, "0"), [1, 0]])
def test_a_malformed_declaration_is_refused(api):
    with pytest.raises(ProviderLoadError, match="PLUGIN_API must be"):
        check_plugin_api("demo", plugin(api))


def test_bundled_plugins_state_their_api():
    from sms_service_kaleyra.provider import KaleyraProvider
    from sms_service_twilio.provider import TwilioProvider

    for cls in (ConsoleProvider, TwilioProvider, KaleyraProvider):
        assert cls.PLUGIN_API == PLUGIN_API
        check_plugin_api(cls.__name__, cls)

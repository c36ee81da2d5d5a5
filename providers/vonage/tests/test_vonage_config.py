"""VonageProvider configuration: each variable checked at start-up, secrets never shown."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from vonage_fakes import API_KEY, API_SECRET, SIGNATURE_SECRET

from sms_service.exceptions import ConfigError
from sms_service.provider import ENTRY_POINT_GROUP, PLUGIN_API
from sms_service_vonage.provider import VonageProvider


def test_entry_point_names_the_provider():
    [ep] = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == "vonage"]
    assert ep.load() is VonageProvider
    assert VonageProvider.PLUGIN_API == PLUGIN_API


@pytest.mark.parametrize(("overrides", "variable"), [
    ({"VONAGE_API_KEY": None}, "VONAGE_API_KEY"),
    ({"VONAGE_API_KEY": "key with spaces"}, "VONAGE_API_KEY"),
    ({"VONAGE_API_SECRET": None}, "VONAGE_API_SECRET"),
    ({"VONAGE_API_SECRET": "line\nbreak"}, "VONAGE_API_SECRET"),
    ({"VONAGE_SIGNATURE_SECRET": "two words"}, "VONAGE_SIGNATURE_SECRET"),
    ({"VONAGE_SIGNATURE_METHOD": "sha384"}, "VONAGE_SIGNATURE_METHOD"),
    ({"VONAGE_CURRENCY": "EURO"}, "VONAGE_CURRENCY"),
    ({"VONAGE_BASE_URL": "rest.nexmo.com"}, "VONAGE_BASE_URL"),
])
def test_bad_values_are_named_and_never_echoed(env, overrides, variable):
    config = {**env, **{k: v for k, v in overrides.items() if v is not None}}
    for name in [k for k, v in overrides.items() if v is None]:
        config.pop(name)
    with pytest.raises(ConfigError) as caught:
        VonageProvider(config, timeout=5)
    assert variable in caught.value.message
    for value in (API_SECRET, "line\nbreak", "two words"):
        assert value not in caught.value.message


@pytest.mark.parametrize("method", ["MD5HASH", "md5", "SHA1", "sha256", "sha512"])
def test_signature_methods_are_read_case_insensitively(env, method):
    provider = VonageProvider({**env, "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET, "VONAGE_SIGNATURE_METHOD": method},
                              timeout=5)
    assert provider.signature_method == method.lower()
    provider.close()


def test_defaults_and_repr_keep_secrets_out(env):
    provider = VonageProvider({**env, "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET}, timeout=5)
    try:
        assert provider.send_url == "https://rest.nexmo.com/sms/json"
        assert provider.balance_url == "https://rest.nexmo.com/account/get-balance"
        assert (provider.currency, provider.signature_method) == ("EUR", "md5hash")
        shown = repr(provider) + repr(vars(provider))
        assert API_KEY in repr(provider)
        assert API_SECRET not in shown and SIGNATURE_SECRET not in shown
    finally:
        provider.close()

"""Provider discovery through the sms_service.providers entry points."""

import textwrap

import pytest
from stevedore.extension import ExtensionManager

from sms_service.config import load_settings
from sms_service.console_provider import ConsoleProvider
from sms_service.exceptions import ConfigError, ProviderLoadError
from sms_service.plugin_loader import installed_providers, load_provider


@pytest.fixture(autouse=True)
def _fresh_entry_point_cache(monkeypatch):
    # stevedore lists a group's entry points once per process; these tests add some.
    monkeypatch.setattr(ExtensionManager, "ENTRY_POINT_CACHE", {})


def _fake_distribution(tmp_path, name, module_source, target):
    """Put a distribution with one provider entry point on sys.path, without pip."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(module_source))
    info = tmp_path / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[sms_service.providers]\n{name} = {target}\n")


def test_installed_lists_the_bundled_providers():
    found = {p.name: p for p in installed_providers()}
    assert {"console", "twilio", "kaleyra", "vonage"} <= found.keys()
    assert found["console"].distribution == "sms-service"
    assert found["twilio"].distribution == "sms-service-twilio"
    assert found["kaleyra"].distribution == "sms-service-kaleyra"
    assert found["vonage"].distribution == "sms-service-vonage"


def test_console_loads():
    assert isinstance(load_provider(load_settings({"SERVICE_PROVIDER": "console"})), ConsoleProvider)


def test_unknown_name_lists_installed():
    with pytest.raises(ProviderLoadError) as info:
        load_provider(load_settings({"SERVICE_PROVIDER": "nosuch"}))
    message = str(info.value)
    assert "SERVICE_PROVIDER" in message and "'nosuch'" in message
    assert "console" in message and "twilio" in message and "kaleyra" in message


def test_plugin_that_fails_to_import(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "brokenplug", "raise ImportError('missing dependency xyz')\n",
                       "brokenplug:Provider")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ProviderLoadError, match="brokenplug.*could not be imported.*xyz"):
        load_provider(load_settings({"SERVICE_PROVIDER": "brokenplug"}))


def test_entry_point_that_is_not_a_provider(tmp_path, monkeypatch):
    _fake_distribution(tmp_path, "notaprovider", "class Thing:\n    pass\n", "notaprovider:Thing")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ProviderLoadError, match="not name a sms_service.provider.Provider subclass"):
        load_provider(load_settings({"SERVICE_PROVIDER": "notaprovider"}))


def test_plugin_whose_constructor_crashes(tmp_path, monkeypatch):
    source = """
        from sms_service.provider import Provider

        class Crashy(Provider):
            def __init__(self, env, *, timeout):
                raise KeyError("boom")

            def send(self, message):
                raise AssertionError
    """
    _fake_distribution(tmp_path, "crashy", source, "crashy:Crashy")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ProviderLoadError, match="crashy.*failed to start"):
        load_provider(load_settings({"SERVICE_PROVIDER": "crashy"}))


def test_plugin_config_error_passes_through():
    with pytest.raises(ConfigError, match="TWILIO_ACCOUNT_SID"):
        load_provider(load_settings({"SERVICE_PROVIDER": "twilio"}))


def test_balance_check_on_a_provider_without_balance_is_a_startup_error():
    with pytest.raises(ConfigError, match="CONSOLE_EMPTY_BALANCE_CHECK.*no balance"):
        load_provider(load_settings({"SERVICE_PROVIDER": "console", "CONSOLE_EMPTY_BALANCE_CHECK": "true"}))


def test_a_plugin_whose_signing_disagrees_with_signs_callbacks_is_refused(tmp_path, monkeypatch):
    source = """
        from sms_service.provider import Provider, PLUGIN_API

        class Fickle(Provider):
            PLUGIN_API = PLUGIN_API

            @classmethod
            def signs_callbacks(cls, env):
                return True

            def __init__(self, env, *, timeout, callback_url=None):
                super().__init__(env, timeout=timeout, callback_url=callback_url)
                self.callbacks_signed = False  # not what the class said

            def send(self, message):
                raise NotImplementedError

            def parse_status_callback(self, request):
                return []
    """
    _fake_distribution(tmp_path, "fickle", source, "fickle:Fickle")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = load_settings({"SERVICE_PROVIDER": "fickle", "PUBLIC_BASE_URL": "https://sms.example.com"})
    with pytest.raises(ProviderLoadError, match="callbacks_signed disagrees with signs_callbacks"):
        load_provider(settings)

"""Configuration parsing: defaults, each variable's validation, one line naming it."""

import pytest

from sms_service.config import load_settings
from sms_service.exceptions import ConfigError

BASE = {"SERVICE_PROVIDER": "console"}


def test_defaults():
    s = load_settings(BASE)
    assert s.provider == "console"
    assert s.rate_limit_max_requests == 100
    assert s.rate_limit_window_ms == 60_000
    assert s.delay_reset_after == 120
    assert s.http_port == 3000
    assert s.log_level == "info"
    assert s.storage_uri.startswith("sqlite:////") and s.storage_uri.endswith("/.local/state/sms-service/sms-service.db")
    assert s.provider_timeout == 10
    assert s.allowed_countries is None
    assert s.blocked_number_types == {"PREMIUM_RATE", "SHARED_COST"}
    assert s.balance_check is False
    assert s.api_keys == ()


def test_values_are_read():
    s = load_settings({
        **BASE, "RATE_LIMIT_MAX_REQUESTS": "7", "RATE_LIMIT_TIME_WINDOW": "30s",
        "EXPONENTIAL_DELAY_RESET_AFTER": "60", "HTTP_PORT": "8080", "LOG_LEVEL": "DEBUG",
        "STORAGE_URI": "redis://localhost:6379/2", "PROVIDER_TIMEOUT": "2.5",
        "ALLOWED_COUNTRIES": "us, gb", "BLOCKED_NUMBER_TYPES": "", "CONSOLE_EMPTY_BALANCE_CHECK": "true",
    })
    assert (s.rate_limit_max_requests, s.rate_limit_window_ms, s.delay_reset_after) == (7, 30_000, 60)
    assert (s.http_port, s.log_level, s.provider_timeout) == (8080, "debug", 2.5)
    assert s.storage_uri == "redis://localhost:6379/2" and s.shared_storage
    assert s.allowed_countries == {"US", "GB"}
    assert s.blocked_number_types == frozenset()
    assert s.balance_check is True


def test_balance_variable_follows_the_provider_name():
    assert load_settings({"SERVICE_PROVIDER": "twilio", "TWILIO_EMPTY_BALANCE_CHECK": "1"}).balance_check
    assert not load_settings({"SERVICE_PROVIDER": "twilio", "KALEYRA_EMPTY_BALANCE_CHECK": "1"}).balance_check
    s = load_settings({"SERVICE_PROVIDER": "my-sms", "MY_SMS_EMPTY_BALANCE_CHECK": "yes"})
    assert s.balance_check and s.balance_check_variable == "MY_SMS_EMPTY_BALANCE_CHECK"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SERVICE_PROVIDER": ""}, "SERVICE_PROVIDER"),
        ({}, "SERVICE_PROVIDER"),
        ({**BASE, "RATE_LIMIT_MAX_REQUESTS": "0"}, "RATE_LIMIT_MAX_REQUESTS"),
        ({**BASE, "RATE_LIMIT_MAX_REQUESTS": "-5"}, "RATE_LIMIT_MAX_REQUESTS"),
        ({**BASE, "RATE_LIMIT_MAX_REQUESTS": "ten"}, "RATE_LIMIT_MAX_REQUESTS"),
        ({**BASE, "RATE_LIMIT_MAX_REQUESTS": "1.5"}, "RATE_LIMIT_MAX_REQUESTS"),
        ({**BASE, "RATE_LIMIT_TIME_WINDOW": "1 fortnight"}, "RATE_LIMIT_TIME_WINDOW"),
        ({**BASE, "RATE_LIMIT_TIME_WINDOW": "0"}, "RATE_LIMIT_TIME_WINDOW"),
        ({**BASE, "RATE_LIMIT_TIME_WINDOW": "0.5ms"}, "RATE_LIMIT_TIME_WINDOW"),
        ({**BASE, "EXPONENTIAL_DELAY_RESET_AFTER": "0"}, "EXPONENTIAL_DELAY_RESET_AFTER"),
        ({**BASE, "EXPONENTIAL_DELAY_RESET_AFTER": "soon"}, "EXPONENTIAL_DELAY_RESET_AFTER"),
        ({**BASE, "EXPONENTIAL_DELAY_RESET_AFTER": "nan"}, "EXPONENTIAL_DELAY_RESET_AFTER"),
        ({**BASE, "HTTP_PORT": "70000"}, "HTTP_PORT"),
        ({**BASE, "HTTP_PORT": "http"}, "HTTP_PORT"),
        ({**BASE, "LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ({**BASE, "STORAGE_URI": "memcached://localhost"}, "STORAGE_URI"),
        ({**BASE, "STORAGE_URI": "redis://"}, "STORAGE_URI"),
        ({**BASE, "STORAGE_URI": "sqlite://"}, "STORAGE_URI"),
        ({**BASE, "STORAGE_URI": "sqlite:///"}, "STORAGE_URI"),
        ({**BASE, "STORAGE_URI": "sqlite://host/file.db"}, "STORAGE_URI"),
        ({**BASE, "STORAGE_URI": "sqlite:////var/lib/"}, "STORAGE_URI"),
        ({**BASE, "PROVIDER_TIMEOUT": "0"}, "PROVIDER_TIMEOUT"),
        ({**BASE, "PROVIDER_TIMEOUT": "inf"}, "PROVIDER_TIMEOUT"),
        ({**BASE, "ALLOWED_COUNTRIES": "USA"}, "ALLOWED_COUNTRIES"),
        ({**BASE, "ALLOWED_COUNTRIES": "U1"}, "ALLOWED_COUNTRIES"),
        ({**BASE, "ALLOWED_COUNTRIES": "US,UK"}, "ALLOWED_COUNTRIES"),
        ({**BASE, "ALLOWED_COUNTRIES": "XX"}, "ALLOWED_COUNTRIES"),
        ({**BASE, "ALLOWED_COUNTRIES": "US,,CA"}, "ALLOWED_COUNTRIES"),
        ({**BASE, "ALLOWED_COUNTRIES": ","}, "ALLOWED_COUNTRIES"),
        ({**BASE, "BLOCKED_NUMBER_TYPES": "PREMIUM_RATE,EXPENSIVE"}, "BLOCKED_NUMBER_TYPES"),
        ({**BASE, "CONSOLE_EMPTY_BALANCE_CHECK": "maybe"}, "CONSOLE_EMPTY_BALANCE_CHECK"),
        ({**BASE, "API_KEYS": "short"}, "API_KEYS"),
        ({**BASE, "IDEMPOTENCY_TTL": "-1"}, "IDEMPOTENCY_TTL"),
    ],
)
def test_bad_values_name_the_variable(env, variable):
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert message.startswith(variable) or f" {variable} " in f" {message} "
    assert "\n" not in message


@pytest.mark.parametrize(
    ("env", "uri"),
    [
        ({"HOME": "/home/ops"}, "sqlite:////home/ops/.local/state/sms-service/sms-service.db"),
        ({"HOME": "/home/ops", "XDG_STATE_HOME": "/xdg"}, "sqlite:////xdg/sms-service/sms-service.db"),
        ({"HOME": "/home/ops", "STATE_DIRECTORY": "/var/lib/sms:/var/lib/other"},
         "sqlite:////var/lib/sms/sms-service.db"),
        ({"HOME": "/home/ops", "STATE_DIRECTORY": "/var/lib/sms", "STATE_DIR": "/srv/state"},
         "sqlite:////srv/state/sms-service.db"),
        ({"STATE_DIR": "/srv/state", "STORAGE_URI": "sqlite:///relative.db"}, "sqlite:///relative.db"),
        ({"STATE_DIR": "/srv/state", "STORAGE_URI": "memory://"}, "memory://"),
    ],
)
def test_the_default_storage_is_a_file_in_the_state_directory(env, uri):
    assert load_settings({**BASE, **env}).storage_uri == uri


def test_api_keys_are_split_and_trimmed():
    keys = load_settings({**BASE, "API_KEYS": " a" * 1 + "x" * 20 + " , " + "y" * 16}).api_keys
    assert keys == ("a" + "x" * 20, "y" * 16)


# -- plain http only for this machine: STATUS_WEBHOOK_URL and PUBLIC_BASE_URL ------------

WEBHOOK_KEY = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _url_settings(variable, url):
    env = {**BASE, variable: url}
    if variable == "STATUS_WEBHOOK_URL":
        env["STATUS_WEBHOOK_SECRET"] = WEBHOOK_KEY
    return load_settings(env)


@pytest.mark.parametrize("variable", ["STATUS_WEBHOOK_URL", "PUBLIC_BASE_URL"])
@pytest.mark.parametrize("url", [
    "http://localhost:9000/hook", "http://LOCALHOST/hook", "http://127.0.0.1/hook",
    "http://127.1.2.3:8080/hook", "http://[::1]:8080/hook", "https://hooks.example.com/hook",
])
def test_plain_http_is_taken_for_loopback_hosts_only(variable, url):
    assert _url_settings(variable, url) is not None


@pytest.mark.parametrize("variable", ["STATUS_WEBHOOK_URL", "PUBLIC_BASE_URL"])
@pytest.mark.parametrize("url", [
    "http://127.attacker.example/hook", "http://127.0.0.1.nip.io/hook", "http://localhost.attacker.example/",
    "http://128.0.0.1/hook", "http://[::2]/hook", "http://0.0.0.0/hook", "http://10.0.0.1/hook",
])
def test_plain_http_to_a_host_that_only_looks_local_is_refused(variable, url):
    with pytest.raises(ConfigError) as error:
        _url_settings(variable, url)
    message = error.value.message
    assert message.startswith(variable) and "https://" in message and "\n" not in message
    assert "attacker" not in message and "nip.io" not in message


def test_a_refused_webhook_url_is_never_echoed():
    url = "http://127.attacker.example/hook?token=s3cr3t-t0ken&user=me"
    with pytest.raises(ConfigError) as error:
        _url_settings("STATUS_WEBHOOK_URL", url)
    message = str(error.value)
    assert message.startswith("STATUS_WEBHOOK_URL")
    assert "s3cr3t-t0ken" not in message and "127.attacker" not in message

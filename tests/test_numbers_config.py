"""EXPONENTIAL_DELAY_RESET_AFTER is bounded at start-up, so no value can make every send fail."""

import pytest

from sms_service.config import load_settings
from sms_service.exceptions import ConfigError

BASE = {"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"}
MONTH = 30 * 86_400


@pytest.mark.parametrize("value", ["1e14", "1e300", str(MONTH + 1), "2592000.5", "100000000000000"])
def test_a_reset_after_beyond_a_month_stops_start_up(value):
    with pytest.raises(ConfigError) as caught:
        load_settings({**BASE, "EXPONENTIAL_DELAY_RESET_AFTER": value})
    assert caught.value.message.startswith("EXPONENTIAL_DELAY_RESET_AFTER must be at most 2592000 seconds")


@pytest.mark.parametrize(("value", "seconds"), [(None, 120), ("0.5", 0.5), ("86400", 86_400), (str(MONTH), MONTH)])
def test_a_reset_after_up_to_a_month_is_kept(value, seconds):
    env = {**BASE, "EXPONENTIAL_DELAY_RESET_AFTER": value} if value else BASE
    assert load_settings(env).delay_reset_after == seconds


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_the_lower_bound_still_holds(value):
    with pytest.raises(ConfigError, match="EXPONENTIAL_DELAY_RESET_AFTER"):
        load_settings({**BASE, "EXPONENTIAL_DELAY_RESET_AFTER": value})


def test_the_largest_allowed_value_works_on_redis(redis_uri):
    from sms_service.exceptions import ReceiverTooSoon
    from sms_service.guards import Guards
    from sms_service.storage import open_storage

    settings = load_settings({**BASE, "STORAGE_URI": redis_uri, "EXPONENTIAL_DELAY_RESET_AFTER": str(MONTH)})
    guards = Guards(settings, open_storage(redis_uri))
    guards.check_delay("+12025550199")
    with pytest.raises(ReceiverTooSoon):
        guards.check_delay("+12025550199")

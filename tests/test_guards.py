"""Each anti-pumping guard on its own, on memory:// and on a real redis-server."""

import threading
import time

import pytest
from support.ports import free_port

from sms_service.config import load_settings
from sms_service.exceptions import (
    DestinationRefused,
    RateLimitExceeded,
    ReceiverTooSoon,
    StorageUnavailable,
)
from sms_service.guards import Guards
from sms_service.storage import open_storage


def make_guards(uri="memory://", **env):
    settings = load_settings({"SERVICE_PROVIDER": "console", "STORAGE_URI": uri, **env})
    return Guards(settings, open_storage(uri))


# -- global rate limit -----------------------------------------------------------------


def test_rate_limit_allows_the_maximum_then_refuses(storage_uri):
    guards = make_guards(storage_uri, RATE_LIMIT_MAX_REQUESTS="3", RATE_LIMIT_TIME_WINDOW="2s")
    for _ in range(3):
        guards.check_rate_limit()
    with pytest.raises(RateLimitExceeded) as info:
        guards.check_rate_limit()
    # SQLite counts in buckets of 1% of the window, so it may say up to 20 ms more: 3 s.
    assert 1 <= info.value.retry_after <= (3 if storage_uri.startswith("sqlite") else 2)


def test_rate_limit_window_slides(storage_uri):
    guards = make_guards(storage_uri, RATE_LIMIT_MAX_REQUESTS="2", RATE_LIMIT_TIME_WINDOW="1500ms")
    guards.check_rate_limit()
    time.sleep(1.1)
    guards.check_rate_limit()
    # A fixed window would have reset at a clock boundary by now; a moving one has not.
    with pytest.raises(RateLimitExceeded):
        guards.check_rate_limit()
    time.sleep(1.0)  # the first hit has left the 1.5 s window, the second has not
    guards.check_rate_limit()
    with pytest.raises(RateLimitExceeded):
        guards.check_rate_limit()


def test_rate_limit_window_is_not_rounded_to_seconds(storage_uri):
    guards = make_guards(storage_uri, RATE_LIMIT_MAX_REQUESTS="1", RATE_LIMIT_TIME_WINDOW="500ms")
    guards.check_rate_limit()
    with pytest.raises(RateLimitExceeded) as info:
        guards.check_rate_limit()
    assert info.value.retry_after == 1  # whole seconds in the header, rounded up
    assert "500 ms" in info.value.message
    time.sleep(0.56)
    guards.check_rate_limit()


def test_rate_limit_is_exact_under_concurrency(storage_uri):
    guards = make_guards(storage_uri, RATE_LIMIT_MAX_REQUESTS="10", RATE_LIMIT_TIME_WINDOW="1 minute")
    passed = []

    def hit():
        try:
            guards.check_rate_limit()
            passed.append(1)
        except RateLimitExceeded:
            pass

    threads = [threading.Thread(target=hit) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(passed) == 10


# -- exponential delay -----------------------------------------------------------------


def test_delay_doubles_and_refusals_do_not_lengthen_it(storage_uri):
    guards = make_guards(storage_uri, EXPONENTIAL_DELAY_RESET_AFTER="60")
    number = "+12025550123"
    guards.check_delay(number)  # first message of the streak passes
    with pytest.raises(ReceiverTooSoon) as info:
        guards.check_delay(number)
    assert info.value.retry_after == 1
    time.sleep(1.05)
    guards.check_delay(number)  # second message, 1 s later
    with pytest.raises(ReceiverTooSoon) as info:
        guards.check_delay(number)
    assert info.value.retry_after == 2
    time.sleep(1.0)
    with pytest.raises(ReceiverTooSoon) as info:  # refused again; the wait stays 2 s from the last send
        guards.check_delay(number)
    assert info.value.retry_after == 1
    time.sleep(1.05)
    guards.check_delay(number)  # third message, 2 s after the second
    with pytest.raises(ReceiverTooSoon) as info:
        guards.check_delay(number)
    assert info.value.retry_after == 4


def test_delay_is_per_receiver(storage_uri):
    guards = make_guards(storage_uri)
    guards.check_delay("+12025550124")
    guards.check_delay("+12025550125")
    with pytest.raises(ReceiverTooSoon):
        guards.check_delay("+12025550124")


def test_delay_streak_resets_after_silence(storage_uri):
    guards = make_guards(storage_uri, EXPONENTIAL_DELAY_RESET_AFTER="0.6")
    number = "+12025550126"
    guards.check_delay(number)
    with pytest.raises(ReceiverTooSoon):
        guards.check_delay(number)
    time.sleep(0.7)
    guards.check_delay(number)  # would need 1 s inside a streak; the streak has reset


def test_delay_lets_exactly_one_of_many_concurrent_through(storage_uri):
    guards = make_guards(storage_uri)
    passed, refused = [], []

    def attempt():
        try:
            guards.check_delay("+12025550127")
            passed.append(1)
        except ReceiverTooSoon as exc:
            refused.append(exc.retry_after)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(passed) == 1 and len(refused) == 19
    assert set(refused) == {1}


def test_delay_keys_hold_a_hash_not_the_number(redis_uri):
    import redis

    guards = make_guards(redis_uri)
    guards.check_delay("+12025550128")
    keys = [k.decode() for k in redis.Redis.from_url(redis_uri).keys("*")]
    assert keys and not any("2025550128" in k for k in keys)
    assert any(k.startswith("sms-service:{delay:") for k in keys)


# -- destination policy ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "number", "refused"),
    [
        ({}, "+447400123456", None),
        ({"ALLOWED_COUNTRIES": "US"}, "+447400123456", "GB is not allowed"),
        ({"ALLOWED_COUNTRIES": "US,GB"}, "+447400123456", None),
        ({"ALLOWED_COUNTRIES": "US"}, "+15558675310", None),  # unassigned +1 range: main region US
        ({"ALLOWED_COUNTRIES": "GB"}, "+15558675310", "US is not allowed"),
        ({"ALLOWED_COUNTRIES": "US"}, "+18765550123", "JM is not allowed"),  # +1 876 is Jamaica
        ({}, "+19005551234", "premium-rate numbers are blocked"),
        ({"BLOCKED_NUMBER_TYPES": ""}, "+19005551234", None),
        ({}, "+33884012345", "shared-cost numbers are blocked"),
        ({"BLOCKED_NUMBER_TYPES": "VOIP"}, "+19005551234", None),
    ],
)
def test_destination_policy(env, number, refused):
    guards = make_guards(**env)
    if refused is None:
        guards.check_destination(number)
    else:
        with pytest.raises(DestinationRefused, match=refused):
            guards.check_destination(number)


# -- balance -----------------------------------------------------------------------------

# -- storage unavailable -----------------------------------------------------------------


def test_dead_redis_fails_closed_and_fast():
    uri = f"redis://127.0.0.1:{free_port()}/0"
    guards = make_guards(uri)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable):
        guards.check_rate_limit()
    with pytest.raises(StorageUnavailable):
        guards.check_delay("+12025550129")
    assert time.monotonic() - started < 3
    assert guards.storage.ping() is False

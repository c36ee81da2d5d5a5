"""Whatever the transport does, one send is at most one POST, and the error says what happened."""

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.drip_provider import DripProvider
from support.ports import free_port
from support.service import TWILIO_SID, TWILIO_TOKEN

from sms_service.exceptions import ProviderError, ProviderTimeout, ProviderUnavailable, ProviderUnreachable
from sms_service.provider import Message, Receipt
from sms_service_twilio.provider import TwilioProvider

TIMEOUT = 0.5
MESSAGE = Message(sender="+15017122661", receiver="+15558675310", body="hi", num_segments=1,
                  encoding="GSM-7")
JSON_BODY = b'{"sid": "SM' + b"a" * 32 + b'", "status": "queued"}'

faults = st.one_of(
    st.just(("refuse", {})),
    st.sampled_from(["close_before_reading", "close_mid_request", "close_after_reading", "hang"]).map(
        lambda name: (name, {})),
    st.tuples(st.sampled_from(["drip_head", "drip_body"]),
              st.fixed_dictionaries({"interval": st.floats(min_value=0.15, max_value=0.4)})),
    st.tuples(st.just("answer"), st.fixed_dictionaries({
        "status": st.integers(min_value=500, max_value=599),
        "body": st.sampled_from([b"", b"oops", b'{"code": 20500, "message": "down"}'])})),
    st.tuples(st.just("garbage"), st.fixed_dictionaries({"garbage": st.binary(min_size=1, max_size=200)})),
    st.tuples(st.just("answer"), st.fixed_dictionaries({
        "status": st.sampled_from([200, 201]), "body": st.sampled_from([JSON_BODY, b"not json", b"[]"])})),
)


def _send(base_url):
    provider = TwilioProvider({"TWILIO_ACCOUNT_SID": TWILIO_SID, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
                               "TWILIO_BASE_URL": base_url}, timeout=TIMEOUT)
    started = time.monotonic()
    try:
        return provider.send(MESSAGE), time.monotonic() - started
    except ProviderError as exc:
        return exc, time.monotonic() - started
    finally:
        provider.close()


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(fault=faults)
def test_one_send_is_at_most_one_post_and_the_error_tells_the_truth(fault):
    name, options = fault
    if name == "refuse":
        outcome, elapsed = _send(f"http://127.0.0.1:{free_port()}")
        assert isinstance(outcome, ProviderUnreachable)
        assert elapsed < TIMEOUT + 0.4
        return
    with DripProvider(name, **options) as server:
        outcome, elapsed = _send(server.url())
        time.sleep(0.05)  # let the server's thread finish counting what it read
        posts = server.received.count(b"POST ")
        assert posts <= 1 and server.requests <= 1 and server.connections == 1
    assert elapsed < TIMEOUT + 0.4
    # Never connected, nothing sent: the only case allowed to say so.
    if isinstance(outcome, ProviderUnreachable):
        assert server.received == b""
    if name in ("hang", "drip_head", "drip_body"):
        assert isinstance(outcome, ProviderTimeout)
    if name == "close_before_reading":
        assert isinstance(outcome, ProviderUnavailable)
    if name in ("close_mid_request", "close_after_reading", "garbage"):
        assert type(outcome) is ProviderUnavailable
    if name == "close_after_reading":
        assert posts == 1 and "may have gone" in outcome.message
    if isinstance(outcome, Receipt):
        assert name == "answer" and options["status"] in (200, 201) and options["body"] == JSON_BODY
        assert outcome.sid == "SM" + "a" * 32
    elif name == "answer":
        assert type(outcome) is ProviderUnavailable  # a 5xx, or a 2xx that is not the JSON object

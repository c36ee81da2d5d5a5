"""The /send view validates without marshmallow on the hot path: it must answer exactly as
the schema that documents it would, for any decoded JSON body."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from sms_service.schemas import SendRequestSchema, load_send_request

SCHEMA = SendRequestSchema()

interesting = st.sampled_from([
    "+15558675310", "+15017122661", "+1555867531\uff10", "+1\u0665\u0665\u0665", "ACME", "Acme Ltd", "12345",
    "\u0661\u0662\u0663", "+19005551234", "", " ", "hi", "x" * 1601, "line\nbreak", "nul\x00", "\ud800",
    "0015558675310", "+", "+0123", "otp", "Otp", "-otp",
])
json_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | interesting | st.text(max_size=20)
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
keys = st.sampled_from(["sender", "receiver", "body", "template", "personalisation", "templateVersion"]) \
    | st.text(max_size=8)
bodies = st.dictionaries(keys, json_value, max_size=5) | json_value


def _outcome(load, data):
    try:
        return "ok", load(data)
    except ValidationError as exc:
        return "error", exc.messages


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(bodies)
def test_the_fast_path_answers_as_the_schema_does(data):
    assert _outcome(load_send_request, data) == _outcome(SCHEMA.load, data)


@pytest.mark.parametrize("data", [
    {"sender": "+15017122661", "receiver": "+15558675310", "body": "Your SMS body"},
    {"sender": "ACME", "receiver": "+15558675310", "body": "x", "extra": 1, "more": None},
    {"receiver": None, "body": 5},
    {"sender": "ACME", "receiver": "+15558675310", "template": "otp", "personalisation": {"code": "1"}},
    {"sender": "ACME", "receiver": "+15558675310", "template": "otp", "templateVersion": 2},
    {"sender": "ACME", "receiver": "+15558675310", "body": "x", "template": "otp"},
    {"sender": "ACME", "receiver": "+15558675310", "personalisation": {"code": "1"}},
    {"sender": "ACME", "receiver": "+15558675310", "template": "otp", "personalisation": {"code": 1}},
    {"sender": "ACME", "receiver": "+15558675310", "template": "otp", "templateVersion": True},
    {"sender": "ACME", "receiver": "+15558675310"},
    [], None, "text", 3,
])
def test_the_fast_path_on_known_shapes(data):
    assert _outcome(load_send_request, data) == _outcome(SCHEMA.load, data)

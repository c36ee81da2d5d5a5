"""SPEC section 21: numbers of non-geographic calling codes are refused unless allowed (issue 22, 8)."""

from __future__ import annotations

import phonenumbers
import pytest
from support.payloads import message

from sms_service.app import create_app
from sms_service.config import load_settings
from sms_service.exceptions import ConfigError

# One possible number of each non-geographic calling code SPEC 21 names.
NUMBERS = {
    800: "+80012345678", 808: "+80812345678", 870: "+870301234567", 878: "+878101234567890",
    881: "+881612345678", 882: "+8823421234", 883: "+883510012345", 888: "+88812345678901",
    979: "+979123456789",
}


def _client(**env: str):
    return create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://", **env}).test_client()


def test_the_list_is_every_non_geographic_calling_code():
    assert set(NUMBERS) == set(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)


@pytest.mark.parametrize("code", NUMBERS)
def test_refused_with_403_by_default_on_send_and_estimate(code):
    client = _client()
    body = message(receiver=NUMBERS[code])
    estimate = client.post("/estimate", json=body)
    send = client.post("/send", json=body)
    for answer in (estimate, send):
        assert answer.status_code == 403, answer.json
        assert answer.json["message"] == f"receiver: numbers of international networks (+{code}) are not allowed"
    assert estimate.json == send.json


@pytest.mark.parametrize("code", [881, 882, 979])
def test_allowed_when_the_variable_says_so(code):
    client = _client(ALLOW_INTERNATIONAL_NETWORKS="true", BLOCKED_NUMBER_TYPES="")
    body = message(receiver=NUMBERS[code])
    assert client.post("/estimate", json=body).status_code == 200
    assert client.post("/send", json=body).status_code == 200


def test_geographic_numbers_are_not_affected():
    client = _client()
    assert client.post("/send", json=message(receiver="+447400123456")).status_code == 200


@pytest.mark.parametrize(("text", "value"), [(None, False), ("true", True), ("false", False), ("1", True)])
def test_the_variable(text, value):
    env = {"SERVICE_PROVIDER": "console"}
    if text is not None:
        env["ALLOW_INTERNATIONAL_NETWORKS"] = text
    assert load_settings(env).allow_international_networks is value


def test_a_bad_value_stops_start_up_naming_the_variable():
    with pytest.raises(ConfigError, match=r"^ALLOW_INTERNATIONAL_NETWORKS must be true or false"):
        load_settings({"SERVICE_PROVIDER": "console", "ALLOW_INTERNATIONAL_NETWORKS": "sometimes"})

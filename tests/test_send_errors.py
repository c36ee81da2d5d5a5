"""SPEC section 3: each provider answer becomes the documented status (in process, HTTP faked)."""

import pytest
import requests
import responses
from support.payloads import message
from support.service import KALEYRA_KEY, KALEYRA_SID, TWILIO_SID, TWILIO_TOKEN

from sms_service.app import create_app

TWILIO_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
KALEYRA_URL = f"https://api.kaleyra.io/v1/{KALEYRA_SID}/messages"
TWILIO_OK = {"sid": "SM" + "a" * 32, "status": "queued", "num_segments": "1",
             "date_created": "Thu, 24 Aug 2023 05:01:45 +0000"}


@pytest.fixture
def twilio_client():
    app = create_app({"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
                      "TWILIO_AUTH_TOKEN": TWILIO_TOKEN})
    return app.test_client()


@pytest.fixture
def kaleyra_client():
    app = create_app({"SERVICE_PROVIDER": "kaleyra", "KALEYRA_SID": KALEYRA_SID,
                      "KALEYRA_API_KEY": KALEYRA_KEY})
    return app.test_client()


def test_twilio_success_converts_the_receipt(twilio_client):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(TWILIO_URL, status=201, json={**TWILIO_OK, "num_segments": "0"})
        response = twilio_client.post("/send", json=message(body="a" * 161))
    assert response.status_code == 200
    assert response.get_json() == {"dateEvent": "2023-08-24T05:01:45.000Z", "numSegments": "2",
                                   "sid": "SM" + "a" * 32, "status": "queued"}


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "contains", "retry_after"),
    [
        (400, {"code": 21211, "message": "The 'To' number is not valid."}, {}, 400, "21211", None),
        (400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient"}, {}, 400, "21610", None),
        (400, {"code": 21617, "message": "The concatenated message body exceeds the 1600 character limit"},
         {}, 400, "21617", None),
        (429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "12"}, 429, "20429", "12"),
        (429, {"code": 20429, "message": "Too Many Requests"}, {}, 429, "20429", None),
        (401, {"code": 20003, "message": "Authenticate"}, {}, 502, "credentials", None),
        (403, {"code": 20003, "message": "Authenticate"}, {}, 502, "credentials", None),
        (404, {"code": 20404, "message": "Not found"}, {}, 502, "", None),
        (500, {"message": "oops"}, {}, 502, "", None),
        (503, {"message": "down"}, {}, 502, "", None),
        (201, "<html>not json</html>", {}, 502, "not JSON", None),
        (201, {"status": "queued"}, {}, 502, "message id", None),
    ],
)
def test_twilio_answers_map_to_statuses(twilio_client, status, body, headers, expected, contains, retry_after):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        kwargs = {"json": body} if isinstance(body, dict) else {"body": body}
        mock.post(TWILIO_URL, status=status, headers=headers, **kwargs)
        response = twilio_client.post("/send", json=message())
        assert len(mock.calls) == 1  # never retried
    assert response.status_code == expected
    payload = response.get_json()
    assert payload["statusCode"] == str(expected) and contains in payload["message"]
    assert TWILIO_TOKEN not in response.get_data(as_text=True)
    assert response.headers.get("Retry-After") == retry_after


# The mapping of requests' exceptions to statuses only: what real sockets produce (refused,
# lost after sending, dripping, silent) is tested in tests/test_transport_*.py.
@pytest.mark.parametrize(
    ("exception", "expected"),
    [
        (requests.exceptions.ConnectionError("refused"), 502),
        (requests.exceptions.ConnectTimeout("slow connect"), 502),  # never connected: nothing sent
        (requests.exceptions.ReadTimeout("slow answer"), 504),
    ],
)
def test_twilio_transport_failures(twilio_client, exception, expected):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(TWILIO_URL, body=exception)
        response = twilio_client.post("/send", json=message())
    assert response.status_code == expected
    assert response.get_json()["statusCode"] == str(expected)


@pytest.mark.parametrize(
    ("status", "body", "expected", "contains"),
    [
        (202, {"id": "abc-1", "createdDateTime": "2022-11-23 15:10:53+00:00", "error": {}}, 200, ""),
        (200, {"id": "abc-2", "createdDateTime": "2022-11-23 15:10:53+00:00", "error": {}}, 200, ""),
        (200, {"error": {"code": "E101", "message": "Sender ID not approved"}}, 400, "E101"),
        (400, {"code": "E413", "message": "Invalid number"}, 400, "E413"),
        (401, {"code": "E401", "message": "Invalid API key"}, 502, "credentials"),
        (429, {"message": "slow down"}, 429, ""),
        (500, {"message": "oops"}, 502, ""),
        (202, {"error": {}}, 502, "message id"),
    ],
)
def test_kaleyra_answers_map_to_statuses(kaleyra_client, status, body, expected, contains):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(KALEYRA_URL, status=status, json=body)
        response = kaleyra_client.post("/send", json=message())
    assert response.status_code == expected
    payload = response.get_json()
    if expected == 200:
        assert payload["status"] == "queued" and payload["dateEvent"] == "2022-11-23T15:10:53.000Z"
        assert payload["numSegments"] == "1"
    else:
        assert payload["statusCode"] == str(expected) and contains in payload["message"]
    assert KALEYRA_KEY not in response.get_data(as_text=True)


def test_unexpected_plugin_failure_is_a_generic_500(twilio_client):
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.post(TWILIO_URL, body=ZeroDivisionError("plugin bug"))
        response = twilio_client.post("/send", json=message())
    assert response.status_code == 500
    payload = response.get_json()
    assert payload == {"statusCode": "500", "error": "Internal Server Error",
                       "message": "internal error; the service log has the details under this request id"}

"""ProviderHTTP builds its requests without requests.Request.prepare() on the hot path:
what goes on the wire must be exactly what prepare() would have produced."""

from __future__ import annotations

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from sms_service.provider_http import ProviderHTTP

URLS = [
    "https://api.twilio.com/2010-04-01/Accounts/AC0123/Messages.json",
    "http://127.0.0.1:8080/v1/HXAP12/messages",
    "https://api.example/v1/a b/ü?x=1",
]


def _wire(prepared: requests.PreparedRequest):
    return prepared.method, prepared.url, dict(prepared.headers), prepared.body, type(prepared.body)


def _both(http: ProviderHTTP, method: str, url: str, **kwargs):
    reference = requests.Request(method, url, headers=http.headers, auth=http.auth, **kwargs).prepare()
    return _wire(http._prepare(method, url, kwargs)), _wire(reference)


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("auth", [None, ("AC0123", "s3cret:tok\u00e9n")])
@pytest.mark.parametrize("kwargs", [
    {"data": {"To": "+15558675310", "From": "ACME", "Body": "hi & bye = 100% \u00e9\U0001f600\n"}},
    {"json": {"to": "+15558675310", "body": "\u00e9", "n": [1, 2]}},
    {"data": {}},
    {},
    {"data": {"a": ["1", "2"], "b": ""}},
])
@pytest.mark.parametrize("method", ["POST", "get", "GET"])
def test_prepared_requests_match_requests_own(url, auth, kwargs, method):
    http = ProviderHTTP("acme", timeout=5, auth=auth, headers={"api-key": "k-123"})
    mine, theirs = _both(http, method, url, **kwargs)
    assert mine == theirs
    again, _ = _both(http, method, url, **kwargs)  # the second call takes the cached URL
    assert again == theirs


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=30), max_size=4))
def test_any_form_is_encoded_as_requests_would(form):
    http = ProviderHTTP("acme", timeout=5, auth=("user", "pass"))
    mine, theirs = _both(http, "POST", URLS[0], data=form)
    assert mine == theirs

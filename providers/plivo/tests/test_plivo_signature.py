"""X-Plivo-Signature-V3: published vectors, the base string's rules, several signatures, tampering."""

from __future__ import annotations

import pytest

from sms_service_plivo import signature

# Published V3 vectors (openHAB's Plivo binding, PlivoSignatureValidatorTest, made with the
# plivo-python construct_post_url / get_signature_v3 logic).
TOKEN = "my_auth_token"
NONCE = "12345"
PARAMS = {"From": ["+14156667777"], "To": ["+14158889999"], "CallUUID": ["abcd-1234"]}
URL_NO_QUERY = "https://example.com/answer"
URL_WITH_QUERY = "https://example.com/answer?token=xyz"
SIG_NO_QUERY = "QUFNUHBhaE5m20p3UFtVHCb66PSliiukfx8M6MyiJwk="
SIG_WITH_QUERY = "IryQ8ucGk4J35wJRxh5K0iVvDCSZpHflFICcZxwx7Cc="


def test_published_base_strings():
    assert signature.base_string("POST", URL_NO_QUERY, PARAMS) == \
        "https://example.com/answer?CallUUIDabcd-1234From+14156667777To+14158889999"
    assert signature.base_string("POST", URL_WITH_QUERY, PARAMS) == \
        "https://example.com/answer?token=xyz.CallUUIDabcd-1234From+14156667777To+14158889999"


@pytest.mark.parametrize(("url", "expected"), [(URL_NO_QUERY, SIG_NO_QUERY), (URL_WITH_QUERY, SIG_WITH_QUERY)])
def test_published_vectors(url, expected):
    assert signature.compute(TOKEN, signature.base_string("POST", url, PARAMS), NONCE) == expected
    assert signature.is_valid(TOKEN, url, PARAMS, NONCE, expected)


def test_any_of_several_comma_separated_signatures_is_enough():
    assert signature.is_valid(TOKEN, URL_NO_QUERY, PARAMS, NONCE, f"notavalidsignaturevalue==,{SIG_NO_QUERY}")
    assert signature.is_valid(TOKEN, URL_NO_QUERY, PARAMS, NONCE, f"{SIG_NO_QUERY}, bm9wZQ==")


@pytest.mark.parametrize(("url", "params", "nonce", "given", "token"), [
    (URL_NO_QUERY, PARAMS, NONCE, SIG_WITH_QUERY, TOKEN),  # the other URL's signature
    (URL_NO_QUERY, PARAMS, NONCE, SIG_NO_QUERY, "wrong_token"),
    (URL_NO_QUERY, PARAMS, "12346", SIG_NO_QUERY, TOKEN),  # another nonce
    (URL_NO_QUERY, {**PARAMS, "To": ["+14158889998"]}, NONCE, SIG_NO_QUERY, TOKEN),  # a tampered field
    (URL_NO_QUERY, {**PARAMS, "Extra": ["1"]}, NONCE, SIG_NO_QUERY, TOKEN),  # an added field
    (URL_NO_QUERY + "?a=1", PARAMS, NONCE, SIG_NO_QUERY, TOKEN),  # an added query
    ("https://example.org/answer", PARAMS, NONCE, SIG_NO_QUERY, TOKEN),  # another host
    (URL_NO_QUERY, PARAMS, NONCE, SIG_NO_QUERY.lower(), TOKEN),
    (URL_NO_QUERY, PARAMS, NONCE, "", TOKEN),
    (URL_NO_QUERY, PARAMS, NONCE, None, TOKEN),
    (URL_NO_QUERY, PARAMS, "", SIG_NO_QUERY, TOKEN),
    (URL_NO_QUERY, PARAMS, None, SIG_NO_QUERY, TOKEN),
    (URL_NO_QUERY, PARAMS, NONCE, SIG_NO_QUERY, ""),
    (URL_NO_QUERY, PARAMS, NONCE, ",,,", TOKEN),
])
def test_tampered_or_missing_is_refused(url, params, nonce, given, token):
    assert not signature.is_valid(token, url, params, nonce, given)


def test_query_is_sorted_and_repeated_values_are_sorted():
    url = "https://h.example:8443/cb?b=2&a=1&a=0"
    params = {"Z": ["2", "1"], "A": ["x"]}
    assert signature.base_string("POST", url, params) == "https://h.example:8443/cb?a=0&a=1&b=2.AxZ1Z2"


def test_a_post_without_parameters_signs_the_url_alone():
    assert signature.base_string("POST", URL_NO_QUERY, {}) == URL_NO_QUERY
    assert signature.base_string("POST", URL_WITH_QUERY, {}) == URL_WITH_QUERY


def test_a_get_merges_its_parameters_into_the_sorted_query():
    assert signature.base_string("GET", URL_WITH_QUERY, {"a": ["1"]}) == "https://example.com/answer?a=1&token=xyz"


def test_non_ascii_text_is_accepted_under_either_sdks_reading():
    params = {"Text": ["Arrêt 🙂"], "From": ["33612345678"]}
    text = signature.base_string("POST", URL_NO_QUERY, params)
    node = signature.compute(TOKEN, text, NONCE)
    python = signature._python_reading(TOKEN, text, NONCE)
    assert node != python
    assert signature.is_valid(TOKEN, URL_NO_QUERY, params, NONCE, node)
    assert signature.is_valid(TOKEN, URL_NO_QUERY, params, NONCE, python)
    assert not signature.is_valid(TOKEN, URL_NO_QUERY, {**params, "Text": ["Arret 🙂"]}, NONCE, node)

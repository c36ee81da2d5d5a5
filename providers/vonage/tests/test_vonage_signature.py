"""The ``sig`` algorithm against vonage-python-sdk's published test vectors, and its edges."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from sms_service_vonage import signature

# vonage-python-sdk 3.x tests/test_signature.py: signature_secret "secret", no method
# (MD5 hash), then each HMAC method.
V3_PARAMS = {"a": "1", "b": "2", "timestamp": "1461605396"}
V3_VECTORS = [
    ("md5hash", "6af838ef94998832dbfc29020b564830"),
    ("md5", "c15c21ced558c93a226c305f58f902f2"),
    ("sha1", "3e19a4e6880fdc2c1426bfd0587c98b9532f0210"),
    ("sha256", "a321e824b9b816be7c3f28859a31749a098713d39f613c80d455bbaffae1cd24"),
    ("sha512", "812a18f76680fa0fe1b8bd9ee1625466ceb1bd96242e4d050d2cfd9a7b40166c63ed26ec9702168781b6edcf16"
               "33db8ff95af9341701004eec3fcf9550572ee8"),
]
# vonage-python-sdk 4.x http_client/tests/test_auth.py: signature_secret "signature_secret".
V4_VECTORS = [
    ({"param1": "value1", "param2": "value2", "timestamp": "1234567890"}, "sha256",
     "280c4320703dbc98bfa22db676655ed2acfbfe8792b062ff7622e67f1183c287"),
    ({"param1": "value1", "param2": "value2", "timestamp": "1234567890"}, "md5", "724c2bf6ca423c36e20631b11d1c5753"),
    ({"param1": "value&1", "param2": "value=2", "timestamp": "1234567890"}, "md5", "2bbf0abafb2c55e5af6231513896a2ac"),
    ({"param": "value", "timestamp": "1234567890"}, "md5", "655a4d0b7f064dff438defc52b012cf5"),
]


@pytest.mark.parametrize(("method", "expected"), V3_VECTORS, ids=[v[0] for v in V3_VECTORS])
def test_sdk_3_vectors(method, expected):
    assert signature.compute(V3_PARAMS, "secret", method) == expected
    assert signature.is_valid({**V3_PARAMS, "sig": expected.upper()}, "secret", method)


@pytest.mark.parametrize(("params", "method", "expected"), V4_VECTORS)
def test_sdk_4_vectors(params, method, expected):
    assert signature.compute(params, "signature_secret", method) == expected
    assert signature.is_valid({**params, "sig": expected}, "signature_secret", method)


def test_the_signed_text_written_out_independently():
    params = {"text": "a=b&c", "msisdn": "447700900000", "timestamp": "1700000000", "sig": "ignored"}
    text = "&msisdn=447700900000&text=a_b_c&timestamp=1700000000"
    assert signature.signed_text(params) == text
    assert signature.compute(params, "k3y", "md5hash") == hashlib.md5((text + "k3y").encode()).hexdigest()
    assert signature.compute(params, "k3y", "sha512") == hmac.new(b"k3y", text.encode(), hashlib.sha512).hexdigest()


@pytest.mark.parametrize("method", signature.METHODS)
def test_tampered_missing_and_wrong_key_are_refused(method):
    good = {**V3_PARAMS, "sig": signature.compute(V3_PARAMS, "secret", method)}
    assert signature.is_valid(good, "secret", method)
    assert not signature.is_valid({**good, "b": "3"}, "secret", method)
    assert not signature.is_valid({**good, "extra": "x"}, "secret", method)
    assert not signature.is_valid(V3_PARAMS, "secret", method)
    assert not signature.is_valid({**good, "sig": ""}, "secret", method)
    assert not signature.is_valid(good, "other", method)
    assert not signature.is_valid(good, "", method)


def test_an_unknown_method_is_a_value_error():
    with pytest.raises(ValueError, match="unknown signature method"):
        signature.compute(V3_PARAMS, "secret", "crc32")

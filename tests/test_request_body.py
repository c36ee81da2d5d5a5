"""Request bodies (issue 10, items 3 to 5): the size limit with or without Content-Length,
huge integers, duplicate keys, non-JSON numbers; in-process and through real gunicorn."""

from __future__ import annotations

import json
import socket

import pytest
from support.payloads import message
from support.service import Service, twilio_env

LIMIT = 16 * 1024


def _post_raw(client, body: bytes):
    return client.post("/send", data=body, content_type="application/json")


def test_a_valid_object_followed_by_spaces_past_the_limit_is_413(client):
    body = json.dumps(message()).encode() + b" " * (1024 * 1024)
    response = _post_raw(client, body)
    assert response.status_code == 413
    assert response.get_json()["statusCode"] == "413"


def test_a_body_of_exactly_the_limit_is_read(client):
    text = json.dumps(message())
    body = text.encode() + b" " * (LIMIT - len(text.encode()))
    assert len(body) == LIMIT
    assert _post_raw(client, body).status_code == 200
    assert _post_raw(client, body + b" ").status_code == 413


@pytest.mark.parametrize("digits", [4301, 5000, 20000])
def test_an_integer_too_long_for_python_is_400_not_500(client, caplog, digits):
    body = b'{"sender": "+15017122661", "receiver": "+15558675310", "body": "x", "n": ' + b"9" * digits + b"}"
    response = _post_raw(client, body[:LIMIT])
    assert response.status_code == 400
    assert response.get_json()["statusCode"] == "400"
    assert "number" in response.get_json()["message"]
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_are_400(client, constant):
    body = f'{{"sender": "+15017122661", "receiver": "+15558675310", "body": "x", "n": {constant}}}'.encode()
    assert _post_raw(client, body).status_code == 400


@pytest.mark.parametrize("field", ["receiver", "sender", "body"])
def test_a_key_given_twice_is_400_naming_it(client, field):
    payload = message()
    parts = [f'"{k}": {json.dumps(v)}' for k, v in payload.items()]
    parts.append(f'"{field}": {json.dumps("+15558675311" if field != "body" else "other")}')
    response = _post_raw(client, ("{" + ", ".join(parts) + "}").encode())
    assert response.status_code == 400
    message_text = response.get_json()["message"]
    assert message_text.startswith(f"{field}:") and "more than once" in message_text


def test_a_nested_duplicate_key_is_refused_too(client):
    body = b'{"sender": "+15017122661", "receiver": "+15558675310", "body": "x", "x": {"a": 1, "a": 2}}'
    assert "more than once" in _post_raw(client, body).get_json()["message"]


# -- through real gunicorn: chunked bodies have no Content-Length ------------------------


def _chunked_post(port: int, body: bytes, chunk: int = 4096) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        try:
            for i in range(0, len(body), chunk):
                piece = body[i:i + chunk]
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the service may answer and close before the whole body is sent
        answer = b""
        while chunk_in := sock.recv(65536):
            answer += chunk_in
    head, _, rest = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


@pytest.mark.e2e
def test_chunked_bodies_are_held_to_the_limit_under_gunicorn(fake_provider_server, fake_provider):
    with Service(twilio_env(fake_provider_server.url), workers=1) as service:
        small = json.dumps(message()).encode()
        status, _ = _chunked_post(service.port, small)
        assert status == 200
        status, body = _chunked_post(service.port, small + b" " * (1024 * 1024))
        assert status == 413 and b'"statusCode": "413"' in body.replace(b'":"', b'": "')
        status, _ = _chunked_post(service.port, b"[" + b"1," * 20000 + b"1]")
        assert status == 413
    assert fake_provider.count() == 1

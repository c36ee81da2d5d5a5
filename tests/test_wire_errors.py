"""Requests gunicorn refuses before the app sees them still get the service's JSON error, on the wire."""

import json
import socket
from http import HTTPStatus

import pytest
from gunicorn.config import Config
from gunicorn.http import errors as http_errors
from gunicorn.workers.base import Worker
from support.service import SERVE_COMMAND, Service

pytestmark = pytest.mark.e2e

MEMORY = {"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"}
# Every bad request carries this; no answer and no log line may ever show it.
SECRET = b"s3cr3tZQ"
JSON_POST = b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def service():
    with Service(MEMORY, command=[*SERVE_COMMAND, "--threads", "4"]) as running:
        yield running


def exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send `data` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def split_response(raw: bytes) -> tuple[int, str, dict[str, str], bytes, bytes]:
    """Status, reason, headers (lower-case names), body and whatever follows the first response."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    _, status, reason = status_line.split(" ", 2)
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    length = int(headers["content-length"])
    return int(status), reason, headers, rest[:length], rest[length:]


BAD_REQUESTS = {
    "bare LF in a header value": (b"GET /-/healthz HTTP/1.1\r\nHost: x\r\nX-A: " + SECRET + b"\nB\r\n\r\n", 400),
    "bare CR in a header value": (b"GET /-/healthz HTTP/1.1\r\nHost: x\r\nX-A: " + SECRET + b"\rB\r\n\r\n", 400),
    "NUL in a header value": (b"GET /-/healthz HTTP/1.1\r\nHost: x\r\nX-A: " + SECRET + b"\x00B\r\n\r\n", 400),
    "header line without a colon": (b"GET /-/healthz HTTP/1.1\r\nHost: x\r\n" + SECRET + b"\r\n\r\n", 400),
    "bad header name": (b"GET /-/healthz HTTP/1.1\r\nHost: x\r\nX(" + SECRET + b"): 1\r\n\r\n", 400),
    "folded header": (b"GET /-/healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n " + SECRET + b"\r\n\r\n", 400),
    "bad request line": (b"GET /" + SECRET + b"\r\n\r\n", 400),
    "control byte in the target": (b"GET /" + SECRET + b"\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "bad method": (b"g" + SECRET + b" / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "bad version": (b"GET /" + SECRET + b" HTTP/7.1\r\nHost: x\r\n\r\n", 400),
    "request line too long": (b"GET /" + SECRET * 1000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "too many headers": (b"GET / HTTP/1.1\r\nHost: x\r\n"
                         + b"".join(b"X-%d: %s\r\n" % (i, SECRET) for i in range(200)) + b"\r\n", 431),
    "header too large": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + SECRET * 2000 + b"\r\n\r\n", 431),
    "unsupported Expect": (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: " + SECRET + b"\r\n\r\n", 417),
    "unknown Transfer-Encoding": (JSON_POST + b"Transfer-Encoding: " + SECRET + b"\r\n\r\n", 501),
    "two Content-Lengths": (JSON_POST + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}" + SECRET, 400),
    "Content-Length and chunked": (JSON_POST + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    "two Hosts": (b"GET / HTTP/1.1\r\nHost: x\r\nHost: " + SECRET + b"\r\n\r\n", 400),
    "bad chunk size on /send": (JSON_POST + b"Transfer-Encoding: chunked\r\n\r\n" + SECRET + b"\r\n", 400),
    "bad chunk terminator on /send": (JSON_POST + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}" + SECRET, 400),
}


@pytest.mark.parametrize(("raw", "status"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_a_refused_request_gets_the_error_json_and_the_connection_closes(service, raw, status):
    got, reason, headers, body, after = split_response(exchange(service.port, raw))
    assert (got, reason.lower()) == (status, HTTPStatus(status).phrase.lower())  # werkzeug capitalises
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert headers["x-request-id"]
    document = json.loads(body)
    assert set(document) == {"statusCode", "error", "message"}
    assert document["statusCode"] == str(status) and document["error"] == HTTPStatus(status).phrase
    assert document["message"] and "<" not in document["message"]
    assert SECRET.decode() not in body.decode() and SECRET.decode() not in json.dumps(headers)
    assert after == b""  # one answer, then the server closed


def test_the_caller_request_id_is_echoed_when_the_headers_were_read(service):
    raw = JSON_POST + b"X-Request-Id: trace-42\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
    status, _, headers, _, _ = split_response(exchange(service.port, raw))
    assert status == 400 and headers["x-request-id"] == "trace-42"


def test_a_malformed_body_the_app_never_reads_ends_the_connection_without_a_second_answer(service):
    raw = b"POST /-/healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + SECRET + b"\r\n"
    status, _, _, body, after = split_response(exchange(service.port, raw))
    assert status == 405 and json.loads(body)["statusCode"] == "405"
    assert after == b""


def test_refusals_are_logged_as_json_lines_without_the_request_bytes(service):
    before = len(service.log_records())
    for raw, _ in BAD_REQUESTS.values():
        exchange(service.port, raw)
    assert SECRET.decode() not in service.log_text()
    records = service.log_records()[before:]  # raises unless every line is one JSON object
    refusals = [r for r in records if r["message"].startswith("request refused: ")]
    # One line each; the two malformed chunked bodies are refused by the app, in its access line.
    assert len(refusals) == len(BAD_REQUESTS) - 2
    assert {r["status"] for r in refusals} == {status for _, status in BAD_REQUESTS.values()}
    assert all(r["level"] == "WARNING" and r["request_id"] and r["remote_addr"] == "127.0.0.1" for r in refusals)
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")]


class CapturingSocket:
    """Stands in for a client socket: keeps what gunicorn writes to it."""

    def __init__(self):
        self.data = b""

    def gettimeout(self):
        return 0.0

    def sendall(self, data):
        self.data += data


class QuietLog:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def gunicorn_status(exc: Exception) -> int:
    """The status gunicorn's own worker answers `exc` with."""
    stand_in = Worker.__new__(Worker)
    stand_in.cfg, stand_in.log = Config(), QuietLog()
    client = CapturingSocket()
    Worker.handle_error(stand_in, None, client, ("127.0.0.1", 1), exc)
    return int(client.data.split(b" ", 2)[1])


TEXT = SECRET.decode()
GUNICORN_REFUSALS = [
    http_errors.InvalidRequestLine(TEXT), http_errors.InvalidRequestMethod(TEXT),
    http_errors.InvalidHTTPVersion(TEXT), http_errors.InvalidHeader(TEXT), http_errors.InvalidHeaderName(TEXT),
    http_errors.ObsoleteFolding(TEXT), http_errors.LimitRequestLine(9000, 4094),
    http_errors.LimitRequestHeaders(TEXT), http_errors.UnsupportedTransferCoding(TEXT),
    http_errors.ExpectationFailed(TEXT), http_errors.InvalidChunkSize(SECRET),
    http_errors.ChunkMissingTerminator(SECRET), http_errors.InvalidChunkExtension(TEXT),
    http_errors.InvalidProxyLine(TEXT), http_errors.ForbiddenProxyRequest(TEXT), http_errors.InvalidSchemeHeaders(),
    http_errors.InvalidH2CPreface(SECRET), http_errors.ConfigurationProblem(TEXT),
    http_errors.InvalidResponseHeader(TEXT), http_errors.InvalidResponseHeaderName(TEXT), RuntimeError(TEXT),
]


@pytest.mark.parametrize("exc", GUNICORN_REFUSALS, ids=lambda exc: type(exc).__name__)
def test_each_refusal_keeps_the_status_gunicorn_gives_it_and_never_its_text(exc):
    from sms_service import wire

    status, message = wire.refusal(exc)
    assert status == gunicorn_status(exc)
    assert TEXT not in message and "9000" not in message
    assert message == message.strip() and message[:1].islower()

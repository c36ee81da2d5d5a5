"""The HTTP/1 layer under the app: read deadlines, and the error JSON for requests gunicorn refuses."""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from ssl import SSLError
from typing import Any

from gunicorn.http import errors as http_errors
from gunicorn.http.body import Body
from gunicorn.http.message import Request
from gunicorn.http.unreader import SocketUnreader
from werkzeug.exceptions import HTTPException

from sms_service.logs import REQUEST_ID_HEADER, request_id_from

_REQUEST_ID_FIELD = REQUEST_ID_HEADER.upper()
_INVALID_HEADER = "a request header is not valid: lines end with CRLF, values hold no control characters"
# Names gunicorn puts in InvalidHeader for framing and singleton fields. Only these are
# named in a message: anything else in the exception may be the caller's bytes.
_NAMED_HEADERS = {"CONTENT-LENGTH": "Content-Length", "TRANSFER-ENCODING": "Transfer-Encoding",
                  "HOST": "Host", "CONTENT-TYPE": "Content-Type"}

_CHUNK_ERRORS = (http_errors.InvalidChunkSize, http_errors.ChunkMissingTerminator,
                 http_errors.InvalidChunkExtension)

# gunicorn's own status for each of its refusals (workers/base.py, handle_error; a test
# holds them equal), with a message of ours: gunicorn's text quotes the raw input.
# Most specific first. Anything else is a 500.
_REFUSALS: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str], ...] = (
    ((http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName), 500, ""),
    (http_errors.ConfigurationProblem, 500, ""),
    (http_errors.InvalidRequestLine, 400, "the request line is not valid HTTP/1.1"),
    (http_errors.InvalidRequestMethod, 400, "the request method is not a valid HTTP method"),
    (http_errors.InvalidHTTPVersion, 400, "the HTTP version is not supported: use HTTP/1.1"),
    (http_errors.LimitRequestLine, 414, "the request line is too long"),
    (http_errors.InvalidHeaderName, 400, "a request header name is not valid"),
    (http_errors.ObsoleteFolding, 400, "a request header is folded over several lines"),
    (http_errors.InvalidHeader, 400, _INVALID_HEADER),
    (http_errors.LimitRequestHeaders, 431, "the request headers are too many or too large"),
    (http_errors.UnsupportedTransferCoding, 501, "the request's Transfer-Encoding is not supported"),
    (http_errors.ExpectationFailed, 417, "the only Expect the service meets is 100-continue"),
    (_CHUNK_ERRORS, 400, "the chunked request body is malformed"),
    (http_errors.InvalidSchemeHeaders, 400, "the request's scheme headers contradict each other"),
    (http_errors.InvalidProxyLine, 400, "the PROXY protocol line is not valid"),
    (http_errors.ForbiddenProxyRequest, 403, "the PROXY protocol is not accepted from this address"),
    (http_errors.InvalidH2CPreface, 400, "the HTTP/2 connection preface is not valid"),
    (SSLError, 403, "the TLS connection failed"),
)


class WireError(HTTPException):
    """A request refused for how it arrived, not for what it asks.

    An HTTPException, so the app answers it with the error JSON when it surfaces while
    the app reads the body; below the app, the worker writes that JSON itself.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(description=message)
        self.code = status
        # Where errors.py (flask-smorest's convention) takes the message from.
        self.data = {"message": message}


def refusal(exc: BaseException) -> tuple[int, str]:
    """The status and message the service answers `exc` with; the message never quotes the request."""
    if isinstance(exc, WireError):
        return exc.code or 500, exc.data["message"]
    for kind, status, message in _REFUSALS:
        if isinstance(exc, kind):
            if kind is http_errors.InvalidHeader and getattr(exc, "hdr", None) in _NAMED_HEADERS:
                name = _NAMED_HEADERS[exc.hdr]
                message = f"the {name} header is repeated, not valid, or contradicts another"
            return status, message or _error_body(status, None)["message"]
    return 500, _error_body(500, None)["message"]


def request_id_of(req: Any) -> str:
    """The caller's request id when its headers were read and it is sane, otherwise a new one."""
    headers = req.headers if isinstance(req, Request) else ()
    return request_id_from(next((value for name, value in headers if name == _REQUEST_ID_FIELD), None))


def error_response(status: int, message: str, request_id: str) -> bytes:
    """A whole HTTP/1.1 answer carrying the error JSON, after which the connection closes."""
    body = json.dumps(_error_body(status, message), separators=(",", ":")).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{REQUEST_ID_HEADER}: {request_id}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _error_body(status: int, message: str | None) -> dict[str, str]:
    # Imported late: serving imports this module in gunicorn's master, where importing
    # the app's modules would load prometheus_client before its multiprocess directory is set.
    from sms_service.errors import error_body

    return error_body(status, message)


class ReadDeadline:
    """When the part of a request being read is due (monotonic seconds), and what to say if it is late."""

    __slots__ = ("at", "message")

    def __init__(self) -> None:
        self.at: float | None = None
        self.message = ""

    def set(self, at: float, message: str) -> None:
        self.at, self.message = at, message

    def clear(self) -> None:
        self.at = None


class DeadlineUnreader(SocketUnreader):
    """gunicorn's socket reader, which gives up with a 408 once the deadline has passed.

    The socket must have a kernel receive timeout (SO_RCVTIMEO): it wakes a blocked read
    every tick to look at the clock. A read that finds data waiting costs what
    gunicorn's does, one recv() and no more system calls, and a client sending a byte
    per tick still runs out of time.
    """

    def __init__(self, sock: Any, deadline: ReadDeadline) -> None:
        super().__init__(sock)
        self.deadline = deadline

    def chunk(self, size_hint: int | None = None) -> bytes:
        while True:
            at = self.deadline.at
            if at is not None and time.monotonic() >= at:
                raise WireError(408, self.deadline.message)
            try:
                return super().chunk(size_hint)
            except BlockingIOError:  # a tick: nothing arrived in the meantime
                continue


class RequestBody(Body):
    """gunicorn's request body, whose framing errors, timeouts and breaks reach the app as HTTP errors.

    Unhandled, they would be the app's 500 (a client's fault logged as ours), with the
    connection kept alive although where the next request starts is unknown.
    """

    def __init__(self, body: Body, request: Request) -> None:
        super().__init__(body.reader)
        self.request = request

    def _read_reader(self, size: int) -> bytes:
        try:
            return super()._read_reader(size)
        except WireError:
            self.request.force_close()
            raise
        except http_errors.NoMoreData:
            self.request.force_close()
            raise WireError(400, "the request body ended before its announced length") from None
        except http_errors.ParseException as exc:
            self.request.force_close()
            raise WireError(*refusal(exc)) from None
        except OSError:
            self.request.force_close()
            raise WireError(400, "the connection failed while the request body was read") from None

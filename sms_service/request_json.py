"""Request bodies: read at most the size limit, then decode strict JSON.

A body is read up to MAX_REQUEST_BYTES + 1 bytes whether or not it declares a
Content-Length (a chunked body has none), so a larger one is refused with 413 without
reading the rest. JSON that Python's decoder would take but that means something else
to another reader is refused with a 400 that says why: a key given twice (a gateway in
front may read the first, we would read the last), NaN and Infinity, and integers too
long for Python to convert.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Request
from flask_smorest import abort

MAX_REQUEST_BYTES = 16 * 1024


def read_body(request: Request) -> bytes:
    """The request body, at most MAX_REQUEST_BYTES; aborts with 413 past it.

    The body is cached on the request, so later reads see the same bytes.
    """
    cached = getattr(request, "_sms_body", None)
    if cached is not None:
        return cached
    environ = request.environ
    declared = request.content_length
    if declared is not None and declared > MAX_REQUEST_BYTES:
        abort(413)
    if declared is None and not environ.get("wsgi.input_terminated"):
        body = b""  # no length and no server-side framing: nothing can be read safely
    else:
        body = _read_up_to(environ["wsgi.input"], MAX_REQUEST_BYTES + 1 if declared is None else declared)
    if len(body) > MAX_REQUEST_BYTES:
        abort(413)
    request._sms_body = body
    return body


def _read_up_to(stream: Any, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = stream.read(limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def decode(body: bytes) -> Any:
    """Decode a JSON document strictly.

    Raises `json.JSONDecodeError` when it is not JSON, and aborts with a 400 that names
    the problem for a duplicate key or a number Python cannot take.
    """
    if not body.strip():
        # webargs would take an empty document for "no JSON at all" and report every
        # field missing; an empty body is simply not a JSON object.
        raise json.JSONDecodeError("empty body", "<empty>", 0)
    try:
        return json.loads(body, object_pairs_hook=_unique_pairs, parse_constant=_no_constants)
    except _DuplicateKey as exc:
        name = exc.key if len(exc.key) <= 40 else exc.key[:40] + "..."
        abort(400, message=f"{name}: given more than once in the request body")
    except RecursionError:
        raise json.JSONDecodeError("JSON nested too deeply", "<nested>", 0) from None
    except json.JSONDecodeError:
        raise
    except UnicodeDecodeError:
        raise json.JSONDecodeError("not UTF-8", "<bytes>", 0) from None
    except ValueError:  # an integer past Python's digit limit, NaN, Infinity
        abort(400, message="the request body has a number that is not a plain JSON number of sane size")

"""X-Plivo-Signature-V3, as Plivo's SDK validators (plivo-python, plivo-node) check it.

The signed text of a POST with form parameters is ``scheme://host/path``, then ``?``
and the URL's own query parameters sorted by name as ``k=v`` joined by ``&``, then
``.`` only when that query was not empty, then every form parameter sorted by name as
name + value (a repeated name: its values sorted); then ``.`` and the nonce. A POST
without parameters, and a GET, sign the URL with its sorted query (``?`` only when
there is one). The signature is base64(HMAC-SHA256(auth token, text)); the header may
carry several, comma-separated (one per active auth token): any one matching is enough.

The two SDKs agree on ASCII text. On other text they differ: plivo-node encodes the
text once as UTF-8, plivo-python formats the UTF-8 bytes as Latin-1 characters and
encodes those again. Which one Plivo's servers use is not published, so a request
whose text is not ASCII is accepted under either reading.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs, urlsplit, urlunsplit


def base_string(method: str, url: str, params: Mapping[str, Iterable[str]]) -> str:
    """The text Plivo signs for a request to `url` with form `params`, before the nonce."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = parse_qs(parts.query, keep_blank_values=True)
    if method.upper() == "GET":
        for name, values in params.items():
            query.setdefault(name, []).extend(values)
        params = {}
    query_text = "&".join(f"{name}={value}" for name in sorted(query) for value in sorted(query[name]))
    if query_text or params:
        base += "?" + query_text
    if query_text and params:
        base += "."
    return base + "".join(name + value for name in sorted(params) for value in sorted(params[name]))


def compute(auth_token: str, text: str, nonce: str) -> str:
    """The signature of a base string and a nonce (plivo-node's reading), base64."""
    return _sign(auth_token, f"{text}.{nonce}".encode())


def _python_reading(auth_token: str, text: str, nonce: str) -> str:
    # plivo-python: ''.join(chr(b) for b in utf8_bytes), then encoded as UTF-8 again.
    twice = text.encode().decode("latin-1") + "." + nonce.encode().decode("latin-1")
    return _sign(auth_token, twice.encode())


def _sign(auth_token: str, data: bytes) -> str:
    return base64.b64encode(hmac.new(auth_token.encode(), data, hashlib.sha256).digest()).decode("ascii")


def is_valid(auth_token: str, url: str, params: Mapping[str, Iterable[str]], nonce: str | None,
             signatures: str | None, method: str = "POST") -> bool:
    """Tell whether any of the comma-separated `signatures` is Plivo's for this request.

    Compares in constant time. False when the token, the nonce or the signatures are
    missing.
    """
    if not auth_token or not nonce or not signatures:
        return False
    text = base_string(method, url, params)
    expected = [compute(auth_token, text, nonce)]
    if not (text + nonce).isascii():
        expected.append(_python_reading(auth_token, text, nonce))
    given = [s.strip() for s in signatures.split(",") if s.strip()]
    matches = [_equal(candidate, g) for candidate in expected for g in given]
    return any(matches)


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))

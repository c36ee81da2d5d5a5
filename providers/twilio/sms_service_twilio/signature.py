"""X-Twilio-Signature, as Twilio's reference validator (twilio-python RequestValidator) checks it.

The signed text is the full URL Twilio requested, then, for each parameter name in
sorted order and each of its values sorted, the name and the value; HMAC-SHA1 keyed
with the account's auth token, base64. A JSON body is signed differently: Twilio adds
``bodySHA256`` (hex SHA-256 of the raw body) to the URL's query and signs the URL alone.
Twilio is inconsistent about ports, so the URL is tried without its port and with its
port (the default one added when it has none).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs, urlsplit, urlunsplit

DEFAULT_PORTS = {"https": 443, "http": 80}


def compute(token: str, url: str, params: Mapping[str, Iterable[str]]) -> str:
    """The signature of `url` and `params` (each name's values), base64."""
    text = url
    for name in sorted(set(params)):
        for value in sorted(set(params[name])):
            text += name + value
    mac = hmac.new(token.encode("utf-8"), text.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def body_hash(body: bytes) -> str:
    """Hex SHA-256 of a raw body, as Twilio puts it in ``bodySHA256``."""
    return hashlib.sha256(body).hexdigest()


def url_variants(url: str) -> tuple[str, str]:
    """The URL without its port, and with its port (the scheme's default when it has none).

    Nothing else changes: Twilio signs the URL exactly as it was given, so the host keeps
    its case (``urlsplit().hostname`` would lower-case it, and every signature over
    ``https://SMS.Example.com/...`` would fail).
    """
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    prefix = userinfo + at
    if hostport.startswith("["):  # an IPv6 literal keeps its brackets
        host = hostport[: hostport.find("]") + 1]
    else:
        host = hostport.partition(":")[0]
    port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    without = urlunsplit(parts._replace(netloc=prefix + host))
    with_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{port}")) if port else without
    return without, with_port


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape"))


def is_valid(token: str, url: str, params: Mapping[str, Iterable[str]], signature: str | None,
             body: bytes | None = None) -> bool:
    """Tell whether `signature` is Twilio's for this request, comparing in constant time.

    For a form body pass its `params` (each name with all its values). For a JSON body
    pass the raw `body` and empty `params`: the URL must then carry ``bodySHA256``
    matching it. Both port variants of the URL are always computed, so timing tells
    nothing about which one matched.
    """
    if not signature:
        return False
    body_ok = True
    if body is not None:
        given = parse_qs(urlsplit(url).query).get("bodySHA256", [""])[0]
        body_ok = _equal(body_hash(body), given)
    results = [_equal(compute(token, variant, params), signature) for variant in url_variants(url)]
    return body_ok and any(results)

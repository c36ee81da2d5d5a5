"""Vonage's ``sig`` on webhooks, as vonage-python's ``check_signature`` computes it.

The signed text is, for each parameter but ``sig`` in sorted order, ``&name=value``,
with ``&`` and ``=`` inside values replaced by ``_``. In ``md5hash`` mode the signature
is the MD5 of that text followed by the signature secret; in the HMAC modes (``md5``,
``sha1``, ``sha256``, ``sha512``) the HMAC of the text keyed with the secret. Hex digests
are compared lower-cased, in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")


def signed_text(params: Mapping[str, str]) -> str:
    """The text Vonage signs: ``&name=value`` per parameter but ``sig``, names sorted."""
    return "".join(f"&{name}={params[name].replace('&', '_').replace('=', '_')}"
                   for name in sorted(params) if name != "sig")


def compute(params: Mapping[str, str], secret: str, method: str) -> str:
    """The hex signature of `params` with `secret` in `method` (one of `METHODS`).

    Raises `ValueError` for an unknown method.
    """
    text = signed_text(params).encode("utf-8")
    if method == "md5hash":
        return hashlib.md5(text + secret.encode("utf-8"), usedforsecurity=False).hexdigest()
    if method not in METHODS:
        raise ValueError(f"unknown signature method {method[:20]!r}")
    return hmac.new(secret.encode("utf-8"), text, method).hexdigest()


def is_valid(params: Mapping[str, str], secret: str, method: str) -> bool:
    """Tell whether ``params["sig"]`` is Vonage's signature of the other `params`, in constant time."""
    given = params.get("sig") or ""
    if not given or not secret:
        return False
    expected = compute(params, secret, method)
    return hmac.compare_digest(given.strip().lower().encode("utf-8", "surrogateescape"), expected.encode())

"""Scrubbing secrets out of text that leaves the service: provider error messages above all.

A provider may echo what it was sent (the callback URL with its token, a credential) in
an error, and that text reaches API callers and logs. Each secret is removed as written,
URL-encoded and JSON-escaped; a URL also without its query, and each query value alone
(the token).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

REDACTED = "[redacted]"
# Shorter texts are words, not secrets: removing them would garble messages and guard nothing.
MIN_SECRET_CHARS = 8


def _spellings(secret: str) -> set[str]:
    """`secret` as a provider may write it back: as is, URL-encoded, JSON-escaped."""
    return {secret, quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret, safe="/:"),
            secret.replace("/", "\\/")}


def _parts(secret: str) -> set[str]:
    parts = {secret}
    split = urlsplit(secret)
    if split.scheme and split.netloc:
        parts.add(secret.split("?", 1)[0].split("#", 1)[0])
        parts.update(value for _, value in parse_qsl(split.query))
    return parts


class Scrubber:
    """Removes a fixed set of secrets (and their spellings) from text."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        texts: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            for part in _parts(secret):
                if len(part) >= MIN_SECRET_CHARS:
                    texts.update(s for s in _spellings(part) if len(s) >= MIN_SECRET_CHARS)
        # Longest first, so a URL goes whole before its token is looked for.
        ordered = sorted(texts, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def scrub(self, text: str) -> str:
        """`text` with every secret replaced by ``[redacted]``."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(REDACTED, text)


def scrub_error(exc: Exception, scrubber: Scrubber) -> Exception:
    """Scrub an error's ``message`` (and what ``str()`` shows) in place; return it, to re-raise."""
    message = getattr(exc, "message", None)
    if isinstance(message, str):
        exc.message = scrubber.scrub(message)
    exc.args = tuple(scrubber.scrub(a) if isinstance(a, str) else a for a in exc.args)
    code = getattr(exc, "provider_code", None)
    if isinstance(code, str):  # a provider's code is its text too, and it is logged
        exc.provider_code = scrubber.scrub(code)
    return exc

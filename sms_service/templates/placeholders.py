"""`((placeholders))` in a template body: parsing, the name rule, and rendering (SPEC section 16).

GOV.UK Notify's syntax: a name between double parentheses, of letters, digits, ``_``,
``-`` and spaces, 1 to 64 characters, matched case-insensitively with the surrounding
spaces trimmed. Values go in verbatim: the rendered text is never parsed again, so a
value holding ``((x))`` stays literal. Knows nothing of Flask or storage.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OPEN, CLOSE = "((", "))"
MAX_NAME = 64
MAX_PLACEHOLDERS = 20
MAX_VALUE = 1600
_NAME_PUNCTUATION = frozenset("_- ")


class PlaceholderError(ValueError):
    """Raised when a body's placeholders are unbalanced, empty or badly named; the message says where."""


@dataclass(frozen=True)
class Part:
    """A piece of a parsed body: literal text, or a placeholder (`key` set) as written."""

    text: str
    key: str | None = None


def key_of(name: str) -> str:
    """The name a placeholder (or a personalisation key) is matched by: trimmed, case-folded."""
    return name.strip().casefold()


def valid_name(name: str) -> bool:
    """Tell whether `name` (trimmed) is 1 to 64 letters, digits, ``_``, ``-`` or spaces."""
    name = name.strip()
    return 1 <= len(name) <= MAX_NAME and all(c.isalnum() or c in _NAME_PUNCTUATION for c in name)


# Versions never change, so a body parses to the same parts every time: each send of a
# template reuses them instead of walking the text again.
@functools.lru_cache(maxsize=1024)
def parse(body: str) -> tuple[Part, ...]:
    """Split a template body into literal text and placeholders (cached: parts are immutable).

    A ``(`` just before ``((`` is literal, so ``(((code)))`` is a placeholder between
    parentheses. Raises `PlaceholderError` naming the 1-based character position of an
    opening without its closing, a closing without its opening, an empty placeholder, a
    bad name, or more than MAX_PLACEHOLDERS distinct names.
    """
    parts: list[Part] = []
    literal: list[str] = []
    names: dict[str, None] = {}
    i, n = 0, len(body)
    while i < n:
        if body.startswith(OPEN, i) and not body.startswith("(((", i):
            end = body.find(CLOSE, i + 2)
            inner = body[i + 2:end] if end >= 0 else ""
            reopened = body.find(OPEN, i + 2)
            if end < 0 or 0 <= reopened < end:
                raise PlaceholderError(f"the placeholder opened at character {i + 1} is not closed with '))'")
            if not inner.strip():
                raise PlaceholderError(f"the placeholder at character {i + 1} is empty")
            if not valid_name(inner):
                raise PlaceholderError(
                    f"the placeholder at character {i + 1} is not a name of 1 to {MAX_NAME} letters, digits, "
                    "'_', '-' or spaces")
            if literal:
                parts.append(Part("".join(literal)))
                literal = []
            parts.append(Part(inner.strip(), key_of(inner)))
            names[key_of(inner)] = None
            i = end + 2
            continue
        if body.startswith(CLOSE, i):
            raise PlaceholderError(f"'))' at character {i + 1} closes no placeholder")
        literal.append(body[i])
        i += 1
    if literal:
        parts.append(Part("".join(literal)))
    if len(names) > MAX_PLACEHOLDERS:
        raise PlaceholderError(
            f"{len(names)} distinct placeholders; a template may have at most {MAX_PLACEHOLDERS}")
    return tuple(parts)


def placeholders(parts: Sequence[Part]) -> list[str]:
    """The distinct placeholder names of a parsed body, as first written, in order."""
    seen: dict[str, str] = {}
    for part in parts:
        if part.key is not None and part.key not in seen:
            seen[part.key] = part.text
    return list(seen.values())


def render(parts: Sequence[Part], personalisation: Mapping[str, str]) -> str:
    """The text of a parsed body with each placeholder replaced by its value, verbatim.

    `personalisation` maps names (any case, any surrounding spaces) to strings. Raises
    `PlaceholderError` for a key given twice under two spellings, a value that is not a
    string or is over MAX_VALUE characters, missing values (``missing code, name``) or
    keys no placeholder uses (both named in one message). Messages name keys, never values.
    """
    values: dict[str, str] = {}
    spelled: dict[str, str] = {}
    for name, value in personalisation.items():
        shown = _shown(name)
        key = key_of(name)
        if key in values:
            raise PlaceholderError(f"{shown} is given twice (as {_shown(spelled[key])!s} too)")
        if not isinstance(value, str):
            raise PlaceholderError(f"{shown}: not a string")
        if len(value) > MAX_VALUE:
            raise PlaceholderError(f"{shown}: longer than {MAX_VALUE} characters")
        values[key], spelled[key] = value, name
    used = {part.key for part in parts if part.key is not None}
    missing = [name for name in placeholders(parts) if key_of(name) not in values]
    unused = [_shown(spelled[key]) for key in values if key not in used]
    problems = [f"missing {', '.join(missing)}"] if missing else []
    if unused:  # named with the missing ones: a misspelt key is usually both
        problems.append(f"{', '.join(unused)} {'is' if len(unused) == 1 else 'are'} not used by the template")
    if problems:
        raise PlaceholderError("; ".join(problems))
    return "".join(values[part.key] if part.key is not None else part.text for part in parts)


def _shown(name: str) -> str:
    # A caller's key in an error message: one short printable line.
    text = "".join(c if c.isprintable() else "?" for c in name.strip())
    return text if len(text) <= 40 else text[:40] + "..."

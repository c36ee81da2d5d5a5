"""What every provider plugin reads the same way: reasons, amounts, settings and secrets (plugin API 1.3)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

MAX_REASON_CHARS = 200


def setting(env: Mapping[str, str], name: str) -> str | None:
    """The value of `name` in `env`, None when unset or empty (templated deployments export NAME="")."""
    return env.get(name) or None


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` as one printable line of at most `limit` characters.

    A provider's reason reaches the caller's error message and the logs: no line breaks,
    no control characters, bounded.
    """
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


def decimal_amount(value: object) -> Decimal | None:
    """A JSON number or numeric string as a finite `Decimal`; None for anything else.

    Booleans, NaN and infinity are None: NaN would make every later comparison with zero
    raise, and infinity is no amount.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


class Secret:
    """A secret kept out of every repr, log line and traceback; the text is `value`."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"

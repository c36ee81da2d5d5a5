"""Count SMS segments the way carriers bill them: GSM 03.38 septets or UCS-2 units.

Written by hand: no maintained library gets the extension table, part sizes and
surrogate-pair rule all right.
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


@dataclass(frozen=True)
class Segments:
    """How a body is billed: its encoding and number of segments."""

    encoding: str
    count: int


def count_segments(body: str) -> Segments:
    """Return the encoding (``GSM-7`` or ``UCS-2``) and segment count of `body`."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in body):
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in body]
        return Segments("GSM-7", _pack(costs, GSM7_SINGLE, GSM7_PART))
    costs = [2 if ord(ch) > 0xFFFF else 1 for ch in body]
    return Segments("UCS-2", _pack(costs, UCS2_SINGLE, UCS2_PART))


def _pack(costs: list[int], single: int, part: int) -> int:
    # An escape pair or a surrogate pair never straddles two parts, so a part may end
    # one unit short: fill greedily instead of dividing.
    total = sum(costs)
    if total <= single:
        return 1
    parts, used = 1, 0
    for cost in costs:
        if used + cost > part:
            parts += 1
            used = 0
        used += cost
    return parts

"""What a reply means: the opt-out and opt-in keywords of SPEC section 12."""

from __future__ import annotations

STOP = "stop"
START = "start"

# A whole single-word body, trimmed, case-insensitive (and the two words OPT OUT).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
                        "OPT OUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
# Twilio's Advanced Opt-Out reading of a reply (OptOutType); HELP changes nothing.
OPT_OUT_TYPES = {"STOP": STOP, "START": START}


def classify(body: str | None, opt_out_type: str | None = None) -> str | None:
    """`STOP` when the reply opts out, `START` when it opts back in, None for any other text.

    The provider's own reading (`opt_out_type`) wins when it says STOP or START.
    """
    if opt_out_type:
        action = OPT_OUT_TYPES.get(opt_out_type.strip().upper())
        if action is not None:
            return action
    if not body or len(body) > 32:
        return None
    # ASCII only: str.upper() turns "\u017ftop" (long s) into "STOP", which nobody typed.
    words = body.split()
    if not 1 <= len(words) <= 2 or not all(word.isascii() for word in words):
        return None
    text = " ".join(words).upper()
    if text in STOP_WORDS:
        return STOP
    if text in START_WORDS:
        return START
    return None

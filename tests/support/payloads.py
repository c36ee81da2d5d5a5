"""Request bodies the tests send."""

import itertools

REFERENCE = {"sender": "+15017122661", "receiver": "+15558675310", "body": "Your SMS body"}
_receivers = itertools.count(100)


def fresh_receiver() -> str:
    """A possible US number not used before in this test session (no exponential delay)."""
    return f"+1202555{next(_receivers) % 10000:04d}"


def message(**overrides: str) -> dict[str, str]:
    """The reference message to a fresh receiver, with `overrides`."""
    return {**REFERENCE, "receiver": fresh_receiver(), **overrides}

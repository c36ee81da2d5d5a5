"""Process lifecycle flags shared by the probes: set once shutdown begins."""

import threading

_shutting_down = threading.Event()


def begin_shutdown() -> None:
    """Mark this process as stopping: readiness answers 503 from now on."""
    _shutting_down.set()


def shutting_down() -> bool:
    """Tell whether shutdown has begun."""
    return _shutting_down.is_set()

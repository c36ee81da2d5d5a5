"""Storage for the commands that work on the stored data (`suppressions`, `templates`): STORAGE_URI alone.

They run beside the service, against its storage, and need none of its other settings:
no provider, no keys.
"""

from __future__ import annotations

from collections.abc import Mapping

from sms_service.config import storage_uri
from sms_service.exceptions import ConfigError
from sms_service.storage import Storage, open_configured_storage


def open_data_storage(env: Mapping[str, str] | None = None) -> Storage:
    """Open the service's storage as STORAGE_URI (or the state directory) names it; close it when done.

    Raises `ConfigError` naming the variable when the URI is malformed, when the storage
    cannot be opened or written, or when it is memory:// (a process's own, not the service's).
    """
    if storage_uri(env).startswith("memory://"):
        raise ConfigError("STORAGE_URI is memory://: this process's data is not the service's; point "
                          "STORAGE_URI at the service's sqlite:// file or redis://")
    return open_configured_storage(env)

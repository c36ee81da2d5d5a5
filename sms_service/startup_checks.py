"""Start-up checks: what must hold before the service listens, shared by serving and `check-config`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sms_service.config import Settings, load_settings
from sms_service.exceptions import ConfigError
from sms_service.plugin_loader import load_providers
from sms_service.storage import check_storage


@dataclass(frozen=True)
class Checked:
    """A configuration that passed: the settings, and where the state lives (in words)."""

    settings: Settings
    state: str


def check_startup(env: Mapping[str, str] | None = None, workers: int | None = None) -> Checked:
    """Check every variable, open, write and close the storage, and build and close each provider.

    With `workers`, also check that the storage can serve that many worker processes.
    Raises `ConfigError` (`ProviderLoadError` for a plugin) naming the first variable to fix.
    """
    settings = load_settings(env)
    if workers is not None:
        check_worker_count(settings, workers)
    state = check_storage(settings)
    check_providers(settings)
    return Checked(settings, state)


def check_providers(settings: Settings) -> None:
    """Build each provider of SERVICE_PROVIDER from its variables and close it; raises as `load_providers`."""
    for provider in load_providers(settings).values():
        provider.close()


def check_worker_count(settings: Settings, workers: int) -> None:
    """Raise `ConfigError` naming STORAGE_URI when its storage cannot serve `workers` workers."""
    if workers < 1:
        raise ConfigError(f"gunicorn would run {workers} workers: at least 1 is needed")
    if workers > 1 and not settings.shared_storage:
        scheme = settings.storage_uri.split(":", 1)[0]
        raise ConfigError(
            f"STORAGE_URI is {scheme}:// but gunicorn would run {workers} workers: each would count "
            "alone and multiply every limit; use sqlite:// or redis://, or one worker"
        )

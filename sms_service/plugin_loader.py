"""Provider plugin discovery: the only module that imports stevedore."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import metadata

from stevedore import DriverManager
from stevedore.exception import NoMatches

from sms_service.config import Settings
from sms_service.exceptions import ConfigError, ProviderLoadError
from sms_service.provider import ENTRY_POINT_GROUP, PLUGIN_API, Provider
from sms_service.status.callbacks import callback_url


@dataclass(frozen=True)
class InstalledProvider:
    """One entry point of the provider group."""

    name: str
    target: str
    distribution: str
    version: str


def installed_providers() -> list[InstalledProvider]:
    """List every installed provider plugin, sorted by name."""
    found = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        found.append(InstalledProvider(
            name=ep.name, target=ep.value,
            distribution=dist.metadata["Name"] if dist else "?",
            version=dist.version if dist else "?",
        ))
    return sorted(found, key=lambda p: p.name)


def load_provider(settings: Settings) -> Provider:
    """Find the plugin named by SERVICE_PROVIDER and build it from the environment.

    Raises `ProviderLoadError` when it is unknown or broken, and `ConfigError` (naming
    the variable) when the plugin refuses its configuration.
    """
    name = settings.provider
    installed = [p.name for p in installed_providers()]
    if name not in installed:
        # Said here, not by stevedore: it would log a WARNING of its own ("Could not load")
        # before this line, which says what to do.
        names = ", ".join(installed) or "none"
        raise ProviderLoadError(f"SERVICE_PROVIDER {name!r} is not an installed provider; installed: {names}")
    try:
        manager = DriverManager(
            namespace=ENTRY_POINT_GROUP, name=name, invoke_on_load=False,
            on_load_failure_callback=_reraise,
        )
    except NoMatches:
        names = ", ".join(p.name for p in installed_providers()) or "none"
        raise ProviderLoadError(
            f"SERVICE_PROVIDER {name!r} is not an installed provider; installed: {names}"
        ) from None
    except ProviderLoadError:
        raise
    except RuntimeError as exc:  # stevedore: several plugins registered under one name
        raise ProviderLoadError(f"SERVICE_PROVIDER {name!r}: {exc}") from None
    cls = manager.driver
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ProviderLoadError(
            f"SERVICE_PROVIDER {name!r}: entry point does not name a sms_service.provider.Provider subclass"
        )
    check_plugin_api(name, cls)
    if settings.balance_check and not cls.supports_balance():
        raise ConfigError(
            f"{settings.balance_check_variable} is on but provider {name!r} has no balance() method"
        )
    url = callback_url(settings, cls)
    # Only a plugin with status support is given the URL: others keep their signature.
    extra = {"callback_url": url} if url is not None else {}
    try:
        provider = cls(settings.env, timeout=settings.provider_timeout, **extra)
    except ConfigError:
        raise
    except Exception as exc:
        raise ProviderLoadError(
            f"SERVICE_PROVIDER {name!r} failed to start ({type(exc).__name__})"
        ) from exc
    if url is not None and provider.callbacks_signed != cls.signs_callbacks(settings.env):
        # The URL's token, and whether the service checks it, follow the class's answer.
        provider.close()
        raise ProviderLoadError(
            f"SERVICE_PROVIDER {name!r}: callbacks_signed disagrees with signs_callbacks(env)"
        )
    return provider


def load_providers(settings: Settings) -> dict[str, Provider]:
    """Load every provider of SERVICE_PROVIDER, in order, each with its own settings.

    Each reads its own ``<NAME>_*`` variables and ``<NAME>_EMPTY_BALANCE_CHECK``; the
    first that fails stops start-up (the ones already built are closed). Raises as
    `load_provider`.
    """
    loaded: dict[str, Provider] = {}
    try:
        for name in settings.providers or (settings.provider,):
            loaded[name] = load_provider(settings_for(settings, name))
    except BaseException:
        for provider in loaded.values():
            provider.close()
        raise
    return loaded


def settings_for(settings: Settings, name: str) -> Settings:
    """The settings as provider `name` sees them: its name and its own balance check."""
    if name == settings.provider:
        return settings
    return dataclasses.replace(settings, provider=name,
                               balance_check=settings.balance_checks.get(name, False))


def check_plugin_api(name: str, cls: type[Provider]) -> None:
    """Refuse a plugin built for a plugin API this core does not provide, in one line.

    Compatible: the same major version, and a minor no newer than this core's.
    """
    wanted = getattr(cls, "PLUGIN_API", None) or (1, 0)
    if not (isinstance(wanted, tuple) and len(wanted) == 2 and all(type(n) is int for n in wanted)):
        raise ProviderLoadError(
            f"SERVICE_PROVIDER {name!r}: PLUGIN_API must be (major, minor), not {wanted!r}"
        )
    if wanted[0] != PLUGIN_API[0] or wanted[1] > PLUGIN_API[1]:
        from sms_service import __version__

        raise ProviderLoadError(
            f"SERVICE_PROVIDER {name!r} was built for plugin API {wanted[0]}.{wanted[1]}, "
            f"but sms-service {__version__} provides plugin API {PLUGIN_API[0]}.{PLUGIN_API[1]}: "
            f"install a {name} version built for it, or a matching sms-service"
        )


def _reraise(manager: object, entrypoint: metadata.EntryPoint, exc: Exception) -> None:
    raise ProviderLoadError(
        f"SERVICE_PROVIDER {entrypoint.name!r} could not be imported "
        f"({type(exc).__name__}: {exc})"
    ) from exc

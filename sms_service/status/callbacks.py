"""Where providers call back, and the token that authenticates providers that cannot sign."""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote

from sms_service.config import Settings
from sms_service.exceptions import ConfigError
from sms_service.provider import Provider

TOKEN_PARAMETER = "token"  # noqa: S105  (the name of a query parameter, not a secret)


def callback_path(provider_name: str) -> str:
    """The route's path for a provider's status callbacks."""
    return f"/callbacks/{quote(provider_name, safe='')}/status"


def status_url(public_base_url: str, provider_name: str) -> str:
    """The public URL of a provider's status callbacks, without token: the one given and checked."""
    return public_base_url + callback_path(provider_name)


def callback_token(secret: str, provider_name: str) -> str:
    """The secret token of one provider's callback URL, derived from CALLBACK_SECRET.

    A keyed hash per provider: the URL given to one provider opens no other's route, and
    rotating CALLBACK_SECRET changes every token. Raises `ValueError` naming
    CALLBACK_SECRET when `secret` is empty: a token of the empty key opens nothing, and an
    unset shell variable would otherwise make one silently.
    """
    if not secret:
        raise ValueError("CALLBACK_SECRET is empty: export the service's CALLBACK_SECRET in this shell")
    mac = hmac.new(secret.encode(), f"sms-service/callback-token/v1/{provider_name}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).decode().rstrip("=")


def callback_url(settings: Settings, provider_cls: type[Provider]) -> str | None:
    """The URL a provider is given for status callbacks; None when status is off for it.

    Off when PUBLIC_BASE_URL is unset or the plugin has no status support. Raises
    `ConfigError` naming CALLBACK_SECRET when the provider cannot sign and no secret is set.
    """
    if not settings.public_base_url or not provider_cls.supports_status():
        return None
    url = status_url(settings.public_base_url, settings.provider)
    if provider_cls.signs_callbacks(settings.env):
        return url
    if not settings.callback_secret:
        raise ConfigError(
            f"CALLBACK_SECRET is required when PUBLIC_BASE_URL is set: provider {settings.provider!r} "
            "cannot sign its callbacks, so their URL carries a token derived from it"
        )
    return f"{url}?{TOKEN_PARAMETER}={callback_token(settings.callback_secret, settings.provider)}"

"""Configuration: the only module that knows the service's environment variable names.

Read and validated once at start-up; a wrong value raises `ConfigError` with one line
that names the variable, so a process never starts half-configured.
"""

from __future__ import annotations

import base64
import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

from sms_service.budgets import BudgetTable, parse_budgets
from sms_service.durations import parse_duration_ms
from sms_service.exceptions import ConfigError
from sms_service.phone import NUMBER_TYPES, region_problem
from sms_service.redis_topology import RedisTopology, is_redis_uri, parse_redis_uri

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Settings:
    """Validated service configuration."""

    provider: str
    rate_limit_max_requests: int = 100
    rate_limit_window_ms: float = 60_000
    delay_reset_after: float = 120
    http_port: int = 3000
    log_level: str = "info"
    storage_uri: str = "memory://"
    provider_timeout: float = 10
    allowed_countries: frozenset[str] | None = None
    blocked_number_types: frozenset[str] = frozenset({"PREMIUM_RATE", "SHARED_COST"})
    # SPEC section 21: non-geographic calling codes (+881, +882, +979...) are refused unless this is on.
    allow_international_networks: bool = False
    balance_check: bool = False
    idempotency_ttl: float = 86_400
    api_keys: tuple[str, ...] = ()
    public_base_url: str | None = None
    callback_secret: str | None = field(default=None, repr=False)
    message_ttl: float = 604_800
    admin_api_keys: tuple[str, ...] = field(default=(), repr=False)
    segment_budgets: BudgetTable | None = None
    status_webhook_url: str | None = None
    status_webhook_secret: str | None = field(default=None, repr=False)
    status_webhook_retry_for_ms: float = 86_400_000
    status_webhook_max_backlog: int = 100_000
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Failover (SPEC section 13): every provider of SERVICE_PROVIDER, in order (the
    # first is `provider`), with its own balance check; and the circuit breakers' settings.
    providers: tuple[str, ...] = ()
    balance_checks: Mapping[str, bool] = field(default_factory=dict)
    failover_failure_threshold: int = 5
    failover_reset_after_ms: float = 30_000
    # Delivery truth (SPEC section 18): the reconciler's first lookup after a record's last
    # change (None: off), its deployment-wide lookups a second, and when a record still
    # not final becomes `unknown`.
    reconcile_after_ms: float | None = 900_000
    reconcile_rate: float = 5
    message_final_after_ms: float = 259_200_000
    # STORAGE_URI read once (SPEC section 19): where Redis is, when it is Redis.
    redis_topology: RedisTopology | None = None

    @property
    def balance_check_variable(self) -> str:
        """Name of this provider's ``<NAME>_EMPTY_BALANCE_CHECK`` variable."""
        return balance_variable(self.provider)

    @property
    def storage_variable(self) -> str:
        """The variable that chose the storage (see `storage_variable`)."""
        return storage_variable(self.env)

    @property
    def shared_storage(self) -> bool:
        """Tell whether guard state is shared between processes."""
        return not self.storage_uri.startswith("memory://")


def storage_uri(env: Mapping[str, str] | None = None) -> str:
    """STORAGE_URI from `env` (the process environment by default), else the state directory's file.

    All that commands working on the stored data need: no provider is configured.
    Raises `ConfigError` naming STORAGE_URI when it is malformed.
    """
    env = os.environ if env is None else env
    uri = _storage_uri(env, "STORAGE_URI", f"sqlite:///{_state_dir(env)}/sms-service.db")
    _redis_topology("STORAGE_URI", uri)  # a malformed Sentinel or Cluster URI is named here too
    return uri


def required_callback_secret(env: Mapping[str, str] | None = None) -> str:
    """CALLBACK_SECRET from `env` (the process environment by default), for commands that need it.

    Raises `ConfigError` naming it when it is unset (not exported to this shell) or malformed.
    """
    env = os.environ if env is None else env
    secret = _secret(env, "CALLBACK_SECRET")
    if secret is None:
        raise ConfigError("CALLBACK_SECRET is not set in this environment: export the service's "
                          "CALLBACK_SECRET first (export CALLBACK_SECRET=...)")
    return secret


def storage_variable(env: Mapping[str, str]) -> str:
    """The variable to fix when the storage cannot be used: STORAGE_URI when set, else STATE_DIR."""
    return "STORAGE_URI" if _raw(env, "STORAGE_URI", "") else "STATE_DIR"


def balance_variable(provider: str) -> str:
    """``<NAME>_EMPTY_BALANCE_CHECK`` for a provider name."""
    return re.sub(r"[^A-Z0-9]", "_", provider.upper()) + "_EMPTY_BALANCE_CHECK"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the configuration from `env` (the process environment by default).

    Raises `ConfigError` naming the first wrong variable.
    """
    env = dict(os.environ if env is None else env)
    providers = _provider_list(env, "SERVICE_PROVIDER")
    provider = providers[0]
    uri = storage_uri(env)
    settings = Settings(
        provider=provider,
        rate_limit_max_requests=_positive_int(env, "RATE_LIMIT_MAX_REQUESTS", 100),
        rate_limit_window_ms=_duration(env, "RATE_LIMIT_TIME_WINDOW", "1 minute"),
        delay_reset_after=_seconds_at_most(env, "EXPONENTIAL_DELAY_RESET_AFTER", 120, 30 * 86_400),
        http_port=_port(env, "HTTP_PORT", 3000),
        log_level=_choice(env, "LOG_LEVEL", "info", LOG_LEVELS),
        storage_uri=uri,
        redis_topology=_redis_topology("STORAGE_URI", uri),
        provider_timeout=_positive_number(env, "PROVIDER_TIMEOUT", 10),
        allowed_countries=_countries(env, "ALLOWED_COUNTRIES"),
        blocked_number_types=_number_types(env, "BLOCKED_NUMBER_TYPES", "PREMIUM_RATE,SHARED_COST"),
        allow_international_networks=_bool(env, "ALLOW_INTERNATIONAL_NETWORKS", False),
        balance_check=_bool(env, balance_variable(provider), False),
        idempotency_ttl=_positive_number(env, "IDEMPOTENCY_TTL", 86_400),
        api_keys=_api_keys(env, "API_KEYS"),
        public_base_url=_public_base_url(env, "PUBLIC_BASE_URL"),
        callback_secret=_secret(env, "CALLBACK_SECRET"),
        message_ttl=_seconds_at_most(env, "MESSAGE_TTL", 604_800, 366 * 86_400),
        admin_api_keys=_admin_api_keys(env, "ADMIN_API_KEYS", "API_KEYS"),
        segment_budgets=_budgets(env, "SEGMENT_BUDGETS"),
        **_status_webhook(env),
        env=env,
        providers=providers,
        balance_checks={name: _bool(env, balance_variable(name), False) for name in providers},
        failover_failure_threshold=_positive_int(env, "FAILOVER_FAILURE_THRESHOLD", 5),
        failover_reset_after_ms=_failover_reset_after(env, "FAILOVER_RESET_AFTER", "30s"),
        **_delivery_truth(env),
    )
    return settings


MAX_RECONCILE_RATE = 1000


def _delivery_truth(env: Mapping[str, str]) -> dict[str, float | None]:
    """RECONCILE_AFTER, RECONCILE_RATE and MESSAGE_FINAL_AFTER (SPEC section 18)."""
    after_text = _raw(env, "RECONCILE_AFTER", "15m")
    after = None if after_text.lower() == "off" else _duration(env, "RECONCILE_AFTER", "15m")
    rate_text = _raw(env, "RECONCILE_RATE", "5")
    try:
        rate = float(rate_text) if rate_text.isascii() else math.nan
    except ValueError:
        rate = math.nan
    if not math.isfinite(rate) or not 0 < rate <= MAX_RECONCILE_RATE:
        raise ConfigError(f"RECONCILE_RATE must be a number of lookups a second, greater than 0 and at most "
                          f"{MAX_RECONCILE_RATE}, got {rate_text!r}")
    final_after = _duration(env, "MESSAGE_FINAL_AFTER", "72h")
    ttl_ms = _seconds_at_most(env, "MESSAGE_TTL", 604_800, 366 * 86_400) * 1000
    if final_after > ttl_ms:
        given = _raw(env, "MESSAGE_FINAL_AFTER", "72h")
        raise ConfigError(f"MESSAGE_FINAL_AFTER must be at most MESSAGE_TTL ({ttl_ms / 1000:g} s): a record "
                          f"must still be there to become unknown, got {given!r}")
    return {"reconcile_after_ms": after, "reconcile_rate": rate, "message_final_after_ms": final_after}


# A provider's variables whose names hold one of these words are credentials.
_SECRET_WORDS = ("SECRET", "TOKEN", "KEY", "PASSWORD")


def secret_values(settings: Settings) -> tuple[str, ...]:
    """Every configured secret, for scrubbing text that leaves the service.

    The service's own (CALLBACK_SECRET, STATUS_WEBHOOK_SECRET, API keys) and each
    provider's ``<NAME>_*`` variables whose names say secret, token, key or password.
    """
    values = [settings.callback_secret, settings.status_webhook_secret,
              *settings.api_keys, *settings.admin_api_keys]
    prefixes = tuple(re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_"
                     for name in settings.providers or (settings.provider,))
    for name, value in settings.env.items():
        if name.startswith(prefixes) and any(word in name[name.index("_"):] for word in _SECRET_WORDS):
            values.append(value.strip())
    return tuple(v for v in values if v)


_FAILOVER_VARIABLES = ("FAILOVER_FAILURE_THRESHOLD", "FAILOVER_RESET_AFTER")
MAX_FAILOVER_RESET_MS = 86_400_000


def ignored_failover_settings(settings: Settings) -> str | None:
    """The start-up warning when FAILOVER_* is set but there is one provider (no circuit), else None."""
    if len(settings.providers) > 1:
        return None
    named = [name for name in _FAILOVER_VARIABLES if settings.env.get(name, "").strip()]
    if not named:
        return None
    return (f"{' and '.join(named)} {'is' if len(named) == 1 else 'are'} ignored: SERVICE_PROVIDER names "
            "one provider, so there is no other to fail over to and no circuit breaker")


def _failover_reset_after(env: Mapping[str, str], name: str, default: str) -> float:
    # A provider skipped for longer than a day is an outage to fix, not to wait out; and
    # storage times past that overflow (10**20 ms gave Redis a negative wait).
    value = _duration(env, name, default)
    if value > MAX_FAILOVER_RESET_MS:
        raise ConfigError(f"{name} must be at most 1 day, got {_raw(env, name, default)!r}")
    return value


MAX_PROVIDERS = 4


def _provider_list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """The ordered providers of `name`: one entry-point name, or up to four, comma-separated.

    Whether each is installed is the plugin loader's to say (it lists what is).
    """
    text = env.get(name, "").strip()
    if not text:
        raise ConfigError(f"{name} is not set: name a provider plugin such as twilio or kaleyra")
    names = tuple(part.strip() for part in text.split(","))
    if "" in names:
        raise ConfigError(f"{name} has an empty entry: list provider names separated by commas, "
                          f"such as twilio,kaleyra")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{name} names {', '.join(duplicates)} more than once")
    if len(names) > MAX_PROVIDERS:
        raise ConfigError(f"{name} lists {len(names)} providers; at most {MAX_PROVIDERS} are allowed")
    return names


def _ascii_digits(text: str) -> bool:
    # str.isdigit() is true of any Unicode digit ("²", "٨"), which int() then misreads or refuses.
    return text.isascii() and text.isdigit()


def _raw(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name)
    return default if value is None or value.strip() == "" else value.strip()


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = _raw(env, name, str(default))
    if not _ascii_digits(text) or int(text) <= 0:
        raise ConfigError(f"{name} must be a whole number greater than 0, got {text!r}")
    return int(text)


def _positive_number(env: Mapping[str, str], name: str, default: float) -> float:
    text = _raw(env, name, str(default))
    try:
        # float() would also read Arabic-Indic or full-width digits.
        value = float(text) if text.isascii() else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a number of seconds greater than 0, got {text!r}")
    return value


def _seconds_at_most(env: Mapping[str, str], name: str, default: float, limit: float) -> float:
    # Storage keeps each receiver's record this long: Redis refuses expiries from about
    # 1e14 s (every send would answer 503), and a silence longer than a month is a
    # value meant in other units.
    value = _positive_number(env, name, default)
    if value > limit:
        raise ConfigError(
            f"{name} must be at most {limit:.0f} seconds ({limit / 86_400:g} days), "
            f"got {_raw(env, name, str(default))!r}"
        )
    return value


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    text = _raw(env, name, str(default))
    if not _ascii_digits(text) or not 1 <= int(text) <= 65535:
        raise ConfigError(f"{name} must be a TCP port between 1 and 65535, got {text!r}")
    return int(text)


def _duration(env: Mapping[str, str], name: str, default: str) -> float:
    try:
        return parse_duration_ms(_raw(env, name, default))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    text = _raw(env, name, default).lower()
    if text not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {text!r}")
    return text


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if text == "" and name not in env:
        return default
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {text!r}")


def _state_dir(env: Mapping[str, str]) -> str:
    # STATE_DIRECTORY is what systemd's StateDirectory= sets; then the XDG convention,
    # which a container's root user and a developer's checkout both can write.
    explicit = _raw(env, "STATE_DIR", "") or _raw(env, "STATE_DIRECTORY", "").split(":")[0]
    if explicit:
        return os.path.abspath(explicit)
    home = _raw(env, "HOME", "") or os.path.expanduser("~")
    base = _raw(env, "XDG_STATE_HOME", "") or os.path.join(home, ".local", "state")
    return os.path.join(base, "sms-service")


def _storage_uri(env: Mapping[str, str], name: str, default: str) -> str:
    text = _raw(env, name, default)
    if text.startswith("sqlite:"):
        if not text.startswith("sqlite:///") or len(text) == len("sqlite:///") or text.endswith("/"):
            raise ConfigError(f"{name} must name a file: sqlite:////absolute/path.db or sqlite:///relative.db")
        return text
    if text != "memory://" and not is_redis_uri(text):
        raise ConfigError(
            f"{name} must be sqlite:///path, memory://, or a redis://, rediss://, redis+unix://, "
            "redis+sentinel:// or redis+cluster:// URI (rediss+ for TLS)"
        )
    return text


def _redis_topology(name: str, uri: str) -> RedisTopology | None:
    if not is_redis_uri(uri):
        return None
    try:
        return parse_redis_uri(uri)
    except ValueError as exc:
        # Never the URI itself: it may hold the password.
        raise ConfigError(f"{name} {exc}") from None


def _countries(env: Mapping[str, str], name: str) -> frozenset[str] | None:
    text = _raw(env, name, "")
    if not text:
        return None
    codes = [code.strip().upper() for code in text.split(",")]
    if "" in codes:
        raise ConfigError(f"{name} has an empty entry: list ISO 3166 alpha-2 codes separated by commas, "
                          "such as US,GB")
    for code in codes:
        problem = region_problem(code)
        if problem:
            raise ConfigError(f"{name}: {problem}")
    return frozenset(codes)


def _number_types(env: Mapping[str, str], name: str, default: str) -> frozenset[str]:
    text = env.get(name, default).strip()
    types = frozenset(t.strip().upper() for t in text.split(",") if t.strip())
    bad = sorted(types - NUMBER_TYPES.keys())
    if bad:
        raise ConfigError(
            f"{name} has unknown number types {', '.join(bad)}; known: {', '.join(sorted(NUMBER_TYPES))}"
        )
    return types


def _budgets(env: Mapping[str, str], name: str) -> BudgetTable | None:
    text = _raw(env, name, "")
    if not text:
        return None
    try:
        return parse_budgets(text)
    except ValueError as exc:
        raise ConfigError(f"{name} {exc}") from None


def _admin_api_keys(env: Mapping[str, str], name: str, senders: str) -> tuple[str, ...]:
    keys = _api_keys(env, name)
    if set(keys) & set(_api_keys(env, senders)):
        # A sending key must never also unblock an opted-out number.
        raise ConfigError(f"{name} must not repeat a key of {senders}: admin keys are separate")
    return keys


def _api_keys(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in env.get(name, "").split(",") if k.strip())
    if any(len(k) < 16 for k in keys):
        raise ConfigError(f"{name} keys must be at least 16 characters long")
    return keys


def _is_loopback_host(host: str) -> bool:
    """Tell whether `host` (a URL's hostname) can only be this machine: plain http is fine there.

    ``localhost`` or a loopback IP literal; never a name that merely starts with "127."
    (``127.attacker.example`` is anyone's host).
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _https_url(name: str, text: str) -> tuple[SplitResult, str]:
    """Split `text`, an https URL (http only on a loopback host) with a numeric port if any.

    The error never quotes the URL: a start-up error reaches logs, and a query may carry
    a token. Returns the parts and the host.
    """
    parts = urlsplit(text)
    host = parts.hostname or ""
    if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback_host(host)):
        raise ConfigError(f"{name} must be an https:// URL (http:// only on localhost or a loopback IP)")
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError:
        raise ConfigError(f"{name} has a port that is not a number") from None
    return parts, host


def _public_base_url(env: Mapping[str, str], name: str) -> str | None:
    # Providers sign (and Kaleyra's token rides in) the URL built from this value, never
    # from Host or X-Forwarded-* headers, which a caller can set to anything.
    text = _raw(env, name, "")
    if not text:
        return None
    parts, host = _https_url(name, text)
    if not host or parts.username or parts.password or "?" in text or "#" in text:
        raise ConfigError(f"{name} must be scheme://host[:port][/path], no credentials, query or fragment")
    if len(text) > 2000:  # Twilio takes callback URLs of at most 4,000 characters, query included
        raise ConfigError(f"{name} must be at most 2000 characters long")
    if "_" in host or not text.isascii() or any(c.isspace() for c in text):
        # Twilio refuses callback URLs with an underscore in the host.
        raise ConfigError(f"{name} must be plain ASCII, with no spaces and no underscore in the host")
    # Normalised here, once: the scheme in lower case, no trailing slash. Nothing else
    # changes (the host keeps its case, an explicit port stays): providers sign the
    # callback URL exactly as it is given, and it is built from this one string both to
    # ask for callbacks and to check their signatures.
    return parts.scheme + text[len(parts.scheme):].rstrip("/")


def _secret(env: Mapping[str, str], name: str) -> str | None:
    text = _raw(env, name, "")
    if not text:
        return None
    if len(text) < 16 or not text.isascii() or not text.isprintable():
        raise ConfigError(f"{name} must be at least 16 printable ASCII characters")
    return text


# -- status webhooks (SPEC section 11) ---------------------------------------------------

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105  (the format's prefix, not a secret)
# Standard Webhooks recommends keys of 24 to 64 bytes; fewer is a guessable key.
WEBHOOK_SECRET_MIN_BYTES = 24
# The retries of one event stop after this long at most: a mistyped "30d" is not meant.
WEBHOOK_RETRY_FOR_MAX_MS = 7 * 86_400_000
# Events waiting in the outbox, at most: beyond it the oldest are dropped. A hundred
# million records would be gigabytes in any storage: a typo, not a plan.
WEBHOOK_MAX_BACKLOG_LIMIT = 100_000_000


def _status_webhook(env: Mapping[str, str]) -> dict[str, object]:
    url = _webhook_url(env, "STATUS_WEBHOOK_URL")
    secret = _raw(env, "STATUS_WEBHOOK_SECRET", "")
    if url is None:
        if secret:
            raise ConfigError("STATUS_WEBHOOK_SECRET is set but STATUS_WEBHOOK_URL is not: "
                              "set both, or neither")
        return {}
    if not secret:
        raise ConfigError("STATUS_WEBHOOK_SECRET is required when STATUS_WEBHOOK_URL is set: "
                          "whsec_ followed by a base64 key of at least 24 bytes")
    _check_webhook_secret("STATUS_WEBHOOK_SECRET", secret)
    retry_for = _duration(env, "STATUS_WEBHOOK_RETRY_FOR", "24h")
    if retry_for < 1000 or retry_for > WEBHOOK_RETRY_FOR_MAX_MS:
        raise ConfigError(f"STATUS_WEBHOOK_RETRY_FOR must be between 1s and 7d, "
                          f"got {_raw(env, 'STATUS_WEBHOOK_RETRY_FOR', '24h')!r}")
    max_backlog = _positive_int(env, "STATUS_WEBHOOK_MAX_BACKLOG", 100_000)
    if max_backlog > WEBHOOK_MAX_BACKLOG_LIMIT:
        raise ConfigError(f"STATUS_WEBHOOK_MAX_BACKLOG must be at most {WEBHOOK_MAX_BACKLOG_LIMIT}, "
                          f"got {max_backlog}")
    return {"status_webhook_url": url, "status_webhook_secret": secret,
            "status_webhook_retry_for_ms": retry_for, "status_webhook_max_backlog": max_backlog}


def _webhook_url(env: Mapping[str, str], name: str) -> str | None:
    text = _raw(env, name, "")
    if not text:
        return None
    if len(text) > 2000 or not text.isascii() or any(c.isspace() or not c.isprintable() for c in text):
        raise ConfigError(f"{name} must be a plain ASCII URL of at most 2000 characters, with no spaces")
    parts, host = _https_url(name, text)
    if not host or parts.username or parts.password or "#" in text:
        # Credentials in the URL would reach logs; the signature authenticates instead.
        raise ConfigError(f"{name} must be scheme://host[:port][/path][?query], no credentials or fragment")
    return text


def _check_webhook_secret(name: str, secret: str) -> None:
    """Raise `ConfigError` unless `secret` is ``whsec_`` + base64 that standardwebhooks accepts."""
    key = secret[len(WEBHOOK_SECRET_PREFIX):]
    problem = None
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        problem = "must start with whsec_"
    else:
        try:
            # standardwebhooks skips characters that are not base64: a typo would silently
            # make another key. Strict first, then the package itself must take it.
            raw = base64.b64decode(key + "=" * (-len(key) % 4), validate=True)
            Webhook(secret)
        except (ValueError, RuntimeError, EmptyWebhookSecretError):  # binascii.Error is a ValueError
            problem = "is not whsec_ followed by base64"
        else:
            if len(raw) < WEBHOOK_SECRET_MIN_BYTES:
                problem = f"holds {len(raw)} bytes, at least {WEBHOOK_SECRET_MIN_BYTES} are needed"
    if problem:
        # Never the value: it is the signing key.
        raise ConfigError(f"{name} {problem}")

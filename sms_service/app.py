"""The Flask application factory."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Flask, Response, g, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from sms_service import console, errors, estimate, metrics, openapi, ops, send
from sms_service.config import Settings, ignored_failover_settings, load_settings
from sms_service.dispatch import Dispatcher
from sms_service.exceptions import StorageUnavailable
from sms_service.failover import Failover, Route, build_failover
from sms_service.guards import Guards
from sms_service.idempotency import Idempotency
from sms_service.logs import REQUEST_ID_HEADER, request_id_from
from sms_service.plugin_loader import load_providers
from sms_service.provider import Provider
from sms_service.request_json import MAX_REQUEST_BYTES
from sms_service.status import routes as status_routes
from sms_service.status.deliverer import Deliverer, make_deliverer
from sms_service.status.listing import ReceiverKey
from sms_service.status.reconcile import Reconciler, first_check_ms
from sms_service.status.service import StatusService
from sms_service.storage import Storage, connect_storage
from sms_service.suppression import routes as suppression_routes
from sms_service.suppression.service import SuppressionList
from sms_service.templates import routes as template_routes
from sms_service.templates.service import Templates

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What one worker builds at start-up and every request shares."""

    settings: Settings
    provider: Provider
    storage: Storage
    guards: Guards
    dispatcher: Dispatcher
    idempotency: Idempotency
    status: StatusService
    suppression: SuppressionList | None = None
    # The status webhook deliverer (STATUS_WEBHOOK_URL set), started by the serving worker.
    webhooks: Deliverer | None = None
    # The reconciler (SPEC section 18), started by the serving worker; one works at a time.
    reconciler: Reconciler | None = None
    failover: Failover | None = None
    templates: Templates | None = None

    def __post_init__(self) -> None:
        if self.templates is None:
            self.templates = Templates(self.storage)
        if self.suppression is None:
            self.suppression = self.guards.suppression
        if self.failover is None:
            self.failover = self.dispatcher.failover

    def route(self, name: str) -> Route | None:
        """The configured provider called `name` (callbacks name theirs), or None."""
        return self.failover.by_name.get(name)

    def authorize(self, header: str | None) -> str | None:
        """Check the bearer key when API_KEYS is set; raises Unauthorized otherwise.

        Returns the identity of the caller's key (None when keys are off).
        """
        keys = self.settings.api_keys
        if not keys:
            return None
        scheme, _, given = (header or "").partition(" ")
        given_bytes = given.strip().encode("utf-8", "surrogateescape")
        # Compare against every key, always, so timing tells nothing about which matched.
        matched = None
        for key in keys:
            if hmac.compare_digest(given_bytes, key.encode()) and matched is None:
                matched = key
        if scheme.lower() != "bearer" or matched is None:
            raise Unauthorized(www_authenticate=WWWAuthenticate("bearer", {"realm": "sms-service"}))
        return self.key_identities[matched]

    @functools.cached_property
    def key_identities(self) -> dict[str, str]:
        """A stable identity per API key, which scopes what the caller owns.

        It is the key's own keyed hash, not its place in API_KEYS: a reorder or a rotation
        never hands one caller's records to another, and the key itself is never stored.
        """
        return {key: key_identity(key) for key in self.settings.api_keys}


def key_identity(key: str) -> str:
    """The identity of one API key: an HMAC-SHA256 of it under a fixed, service-specific key."""
    return hmac.new(b"sms-service/api-key-identity/v1", key.encode(), hashlib.sha256).hexdigest()[:32]


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    """Build the app from `env` (the process environment by default).

    Raises `ConfigError` (or `ProviderLoadError`) naming what is wrong.
    """
    settings = load_settings(env)
    providers = load_providers(settings)  # every provider of SERVICE_PROVIDER, in order
    provider = providers[settings.provider]
    storage = connect_storage(settings)
    guards = Guards(settings, storage)
    status = StatusService(settings.provider, provider, storage, settings.message_ttl,
                           settings.public_base_url, settings.callback_secret)
    failover = build_failover(settings, providers, storage, status)
    receivers = ReceiverKey(storage)
    try:
        receivers.load()  # once at start-up, never on a send's time
    except StorageUnavailable:
        log.warning("the receiver hash key could not be read yet; the first send will read it")
    for route in failover.routes:
        route.status.receivers = receivers
        can_look_up = route.provider.supports_fetch_status()
        route.status.first_check_ms = first_check_ms(
            settings.reconcile_after_ms, settings.message_final_after_ms, can_look_up)
    ignored = ignored_failover_settings(settings)
    if ignored:
        log.warning(ignored)
    dispatcher = Dispatcher(settings.provider, provider, guards, status, failover)
    services = Services(
        settings, provider, storage, guards, dispatcher,
        # Past the balance read and the send of every provider tried, each bounded by
        # PROVIDER_TIMEOUT, plus storage: a key taken over sooner could send twice.
        Idempotency(storage, settings.idempotency_ttl,
                    stale_after_s=settings.provider_timeout * 2 * len(providers) + 30),
        status,
        failover=failover,
    )
    services.reconciler = Reconciler(
        storage, {route.name: route.status for route in failover.routes}, status,
        after_ms=settings.reconcile_after_ms, rate=settings.reconcile_rate,
        final_after_ms=settings.message_final_after_ms)
    if settings.status_webhook_url and settings.status_webhook_secret:
        services.webhooks = make_deliverer(
            storage, settings.status_webhook_url, settings.status_webhook_secret,
            settings.status_webhook_retry_for_ms, user_agent=f"sms-service/{_version()}",
            max_backlog=settings.status_webhook_max_backlog)
        for route in failover.routes:  # every provider's records make events
            route.status.webhooks = services.webhooks
        if not settings.shared_storage:
            log.warning("status webhooks wait in process memory (STORAGE_URI memory://): events not yet "
                        "delivered are lost at every restart; use sqlite:// or a persistent redis://")

    app = Flask(__name__)
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,  # for every route; /send reads its body itself
        API_TITLE="sms-service",
        API_VERSION=_version(),
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/documentation",
        OPENAPI_JSON_PATH="json",
        API_SPEC_OPTIONS=openapi.spec_options(settings.public_base_url),
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    services.key_identities  # noqa: B018  (hashed once at start-up, never on the hot path)
    app.extensions["sms_service"] = services
    api = errors.init_app(app, api_keys=bool(settings.api_keys))
    api.register_blueprint(send.bp)
    api.register_blueprint(estimate.bp)
    api.register_blueprint(status_routes.bp)
    api.register_blueprint(suppression_routes.bp)
    api.register_blueprint(template_routes.bp)
    if not settings.shared_storage:
        log.warning("the suppression list lives in process memory (STORAGE_URI memory://): opt-outs are "
                    "lost at every restart; use sqlite:// or a persistent redis:// in production")
    app.register_blueprint(ops.bp)
    openapi.document(api, app)
    if settings.admin_api_keys:  # no console without admin keys: /console/ is then the API's 404
        console.init_app(app, services)

    @app.before_request
    def take_request_id() -> None:
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))

    @app.after_request
    def echo_request_id(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id") or request_id_from(None)
        if request.path == "/send":
            outcome = "ok" if response.status_code < 400 else g.get("outcome", "http_error")
            metrics.count_send(response.status_code, outcome)
        return response

    return app


def _version() -> str:
    from sms_service import __version__

    return __version__

"""Operational routes (Mia-Platform conventions): probes and metrics."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from sms_service import lifecycle, metrics
from sms_service.exceptions import ProviderError, StorageUnavailable

bp = Blueprint("ops", __name__, url_prefix="/-")


def _name_version() -> dict[str, str]:
    from sms_service import __version__

    return {"name": "sms-service", "version": __version__}


def _answer(checks: dict[str, str], figures: dict[str, object] | None = None) -> Response:
    healthy = all(state == "OK" for state in checks.values())
    body = {**_name_version(), "status": "OK" if healthy else "KO", "checks": checks, **(figures or {})}
    if not healthy:
        failing = ", ".join(name for name, state in checks.items() if state != "OK")
        # 503 still carries the error fields every 5xx of the service has.
        body.update(statusCode="503", error="Service Unavailable", message=f"not ready: {failing}")
    response = jsonify(body)
    response.status_code = 200 if healthy else 503
    return response


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the process answers."""
    return jsonify({**_name_version(), "status": "OK"})


@bp.get("/ready")
def ready() -> Response:
    """Readiness: provider loaded, storage reachable, not shutting down."""
    services = current_app.extensions["sms_service"]
    return _answer({
        "provider": "OK" if services.provider is not None else "KO",
        "storage": "OK" if services.storage.ping() else "KO",
        "process": "KO" if lifecycle.shutting_down() else "OK",
    })


@bp.get("/check-up")
def check_up() -> Response:
    """Dependencies one by one: storage, and the provider balance when it is checked."""
    services = current_app.extensions["sms_service"]
    checks = {"storage": "OK" if services.storage.ping() else "KO"}
    if services.settings.balance_check:
        try:
            services.provider.balance()
            checks["provider_balance"] = "OK"
        except ProviderError:
            checks["provider_balance"] = "KO"
    return _answer(checks, _webhook_figures(services))


def _webhook_figures(services: object) -> dict[str, object]:
    # Figures beside the checks, not a check: a receiver that is down is the caller's to
    # fix, and this service keeps its events meanwhile. The storage check says if they can be read.
    if getattr(services, "webhooks", None) is None:
        return {}
    try:
        backlog, oldest_ms = services.storage.guarded(services.storage.webhook_stats)
    except StorageUnavailable:
        return {"statusWebhooks": {"backlog": None, "oldestPendingSeconds": None}}
    oldest = None if oldest_ms is None else round(oldest_ms / 1000, 3)
    return {"statusWebhooks": {"backlog": backlog, "oldestPendingSeconds": oldest}}


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Prometheus text exposition of the whole deployment's workers."""
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)

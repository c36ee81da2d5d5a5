"""Operational routes (Mia-Platform conventions): probes and metrics."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from sms_service import lifecycle, metrics
from sms_service.balance_cache import balance_state
from sms_service.exceptions import StorageUnavailable

bp = Blueprint("ops", __name__, url_prefix="/-")


def _name_version() -> dict[str, str]:
    from sms_service import __version__

    return {"name": "sms-service", "version": __version__}


def _answer(checks: dict[str, str], **details: object) -> Response:
    healthy = all(state == "OK" for state in checks.values())
    body = {**_name_version(), "status": "OK" if healthy else "KO", "checks": checks, **details}
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
    providers = provider_states(services, checks)
    return _answer(checks, **_storage_topology(services.storage), providers=providers,
                   **_webhook_figures(services))


def _storage_topology(storage: Any) -> dict[str, object]:
    # Redis beyond one node (SPEC section 19): which topology, and which primary serves now.
    try:
        described = storage.guarded(storage.describe)
    except StorageUnavailable:
        described = {"topology": getattr(getattr(storage, "topology", None), "kind", None), "primary": None}
    return {"storageTopology": described} if described else {}


def provider_states(services: Any, checks: dict[str, str]) -> list[dict[str, object]]:
    """Each provider in failover order, with its circuit and, when checked, its balance.

    Fills `checks` with the balance checks, each read through the deployment-wide balance
    cache (at most one provider call per 30 s).

    With several providers, the ``providers`` check is KO only when every circuit is
    open (nothing can be sent); one open circuit shows in the list.
    """
    routes = services.failover.routes
    listed: list[dict[str, object]] = []
    for route in routes:
        entry: dict[str, object] = {"name": route.name, "circuit": "off"}
        if route.circuit is not None:
            try:
                entry["circuit"], entry["failures"], _ = route.circuit.state()
            except StorageUnavailable:
                entry["circuit"] = "unknown"
        if route.balance_check:
            # One provider keeps the check's name of before failover existed.
            key = "provider_balance" if len(routes) == 1 else f"provider_balance:{route.name}"
            # Read at most once per 30 s for the whole deployment (balance_cache.py): this
            # route is open to anyone, and each read spends the provider account's quota.
            try:
                state = balance_state(services.storage, route.name, route.provider.balance,
                                      services.settings.provider_timeout + 1)
            except StorageUnavailable:
                state = "unknown"
            entry["balance"] = state
            checks[key] = "OK" if state in ("OK", "empty") else "KO"
        listed.append(entry)
    if len(routes) > 1:
        checks["providers"] = "KO" if all(e["circuit"] == "open" for e in listed) else "OK"
    return listed


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
    services = current_app.extensions["sms_service"]
    for route in services.failover.routes:  # the circuits' gauges, read afresh from the storage
        if route.circuit is not None:
            try:
                route.circuit.state()
            except StorageUnavailable:
                pass
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)

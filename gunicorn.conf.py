"""gunicorn settings: threaded workers (the work is waiting on the provider), JSON logs.

Tunable with WEB_CONCURRENCY (workers, default 1), GUNICORN_THREADS (threads per
worker, default 64) and HTTP_PORT (default 3000).
"""

import os
import sys
import tempfile

from sms_service.logs import GunicornLogger


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else default


bind = [f"{os.environ.get('HTTP_BIND_HOST', '0.0.0.0')}:{_int('HTTP_PORT', 3000)}"]  # noqa: S104
workers = _int("WEB_CONCURRENCY", 1)
worker_class = "gthread"
# One thread per in-flight send: 64 covers 64 concurrent sends of 100 ms per worker.
threads = _int("GUNICORN_THREADS", 64)
# A worker is killed only when its main loop stalls; in-flight sends are bounded by
# PROVIDER_TIMEOUT, so let SIGTERM wait a little longer than the slowest of them.
timeout = 30
graceful_timeout = max(30, int(float(os.environ.get("PROVIDER_TIMEOUT", "10") or 10)) + 5)
keepalive = 5
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
logger_class = GunicornLogger
capture_output = False
max_requests = 0
# gunicorn's runtime control socket is one fixed path per user, so two instances on
# one host would fight over it; nothing here needs it.
control_socket_disable = True

# prometheus_client's multiprocess mode sums the workers' files: the directory must
# exist before any worker imports the client.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sms-service-metrics-")


def on_starting(server):
    """Refuse to start on bad configuration, with one line that names the variable."""
    from sms_service.config import load_settings
    from sms_service.exceptions import ConfigError
    from sms_service.logs import configure_logging
    from sms_service.plugin_loader import load_provider

    configure_logging(loglevel if loglevel in ("debug", "info", "warning", "error", "critical") else "info")
    try:
        settings = load_settings()
        load_provider(settings).close()
    except ConfigError as exc:
        server.log.critical(f"configuration error: {exc.message}")
        sys.exit(1)
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):  # stale files of a previous run would be summed in
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))


def post_worker_init(worker):
    """Turn readiness to 503 as soon as the worker is told to stop."""
    import signal

    from sms_service import lifecycle

    original = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        lifecycle.begin_shutdown()
        if callable(original):
            original(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def child_exit(server, worker):
    """Drop the metrics of a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    """Close the provider's pooled connections and the storage's as the worker ends."""
    app = getattr(worker, "wsgi", None)
    services = getattr(app, "extensions", {}).get("sms_service")
    if services is not None:
        services.provider.close()
        services.storage.close()

"""Serving: the packaged gunicorn settings, and gunicorn run in-process by `sms-service serve`.

The serving variables (WEB_CONCURRENCY, GUNICORN_THREADS, HTTP_BIND_HOST, and HTTP_PORT
for the bind address, HTTP_HEADER_TIMEOUT and HTTP_BODY_TIMEOUT for the worker's read
deadlines) are read here because they configure gunicorn, not the app.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import io
import logging
import math
import os
import selectors
import shlex
import shutil
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.http.message import Request
from gunicorn.http.unreader import SocketUnreader
from gunicorn.workers import gthread

from sms_service import wire
from sms_service.config import LOG_LEVELS, load_settings
from sms_service.exceptions import ConfigError
from sms_service.logs import GunicornLogger, configure_logging
from sms_service.startup_checks import check_startup, check_worker_count

if TYPE_CHECKING:
    from flask import Flask

# Set by the packaged settings and inherited by the workers: tells the app it is served
# as intended, not by a bare `gunicorn wsgi:app` (a sync worker on port 8000, text logs).
PACKAGED_MARKER = "SMS_SERVICE_PACKAGED_SETTINGS"
WORKER_CLASS = "sms_service.serving.ThreadWorker"
DEFAULT_THREADS = 64
DEFAULT_PORT = 3000
# A request line and headers fit in one packet or a few; a body is at most 16 KiB (at
# 20 s, 0.8 KiB/s). A client slower than that holds a thread, and with it a connection
# slot, that other callers are waiting for.
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 20.0
MAX_READ_TIMEOUT = 3600.0
# How late past its deadline a silent client may be noticed, at most.
READ_TICK = 1.0
# How long a thread waits for a new connection's first byte before the poller takes it
# over (gthread: 5 s). Clients send their request as soon as they connect.
FIRST_BYTE_WAIT = 1.0
# As gunicorn's close_graceful: how long and how much a closing connection is drained.
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 64 * 1024

log = logging.getLogger(__name__)


class Connection(gthread.TConn):
    """A gthread connection whose request heads and bodies must arrive before their deadlines.

    Closing, it lingers in the worker's poller rather than in a blocking wait.
    """

    def __init__(self, worker: ThreadWorker, sock: socket.socket, client: Any, server: Any) -> None:
        super().__init__(worker.cfg, sock, client, server)
        self.worker = worker
        self.read_deadline = wire.ReadDeadline()
        # Idle time counts: a connection that sends nothing holds its slot until then at most.
        self.first_head_due = time.monotonic() + worker.header_timeout
        self.lingered = 0
        # Without TLS, a blocked read wakes every tick to check the deadline (see
        # wire.DeadlineUnreader); under TLS the tick would fail the read instead.
        self.deadlines = not worker.cfg.is_ssl
        if self.deadlines:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, worker.read_tick)

    def wait_for_data(self, timeout: float) -> bool:
        # gthread waits 5 s in a thread; a client that means to send has sent by FIRST_BYTE_WAIT.
        # The poller waits on, until the head is due (see ThreadWorker.finish_request).
        left = self.first_head_due - time.monotonic()
        return super().wait_for_data(max(0.0, min(timeout, FIRST_BYTE_WAIT, left)))

    def init(self) -> None:
        """Set up the connection once, and the deadline of the head about to be read (called per request)."""
        first = not self.initialized
        super().init()
        if first:
            if self.deadlines and not self.is_http2 and type(self.parser.unreader) is SocketUnreader:
                self.parser.unreader = wire.DeadlineUnreader(self.sock, self.read_deadline)
            due = self.first_head_due
        else:  # kept alive: from the first byte of the next request
            due = time.monotonic() + self.worker.header_timeout
        self.read_deadline.set(due, self.worker.header_late)

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.worker.linger(self)
        else:
            super().close()


class ThreadWorker(gthread.ThreadWorker):
    """gunicorn's gthread worker, taking at most one connection per thread and keeping them alive.

    `worker_connections` is ignored: the cap is always the thread count. A request's head
    and body must arrive within HTTP_HEADER_TIMEOUT and HTTP_BODY_TIMEOUT (408 otherwise),
    and what gunicorn refuses is answered with the service's error JSON.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A worker that accepts more connections than it has threads queues them behind
        # its busy threads while another worker idles: all workers poll one listening
        # socket, so the quickest to wake takes most connections (splits of 47/17 cost
        # 10%). At the cap it stops accepting and the kernel holds them for the others.
        self.worker_connections = self.cfg.threads
        # gthread keeps `worker_connections - threads` connections alive, 0 here. An idle
        # kept-alive connection waits in the poller, not in a thread, so keep them all.
        self.max_keepalived = self.worker_connections
        # Checked by settings() before gunicorn starts.
        self.header_timeout, self.body_timeout = read_timeouts(os.environ)
        self.header_late = f"the request headers did not arrive within {self.header_timeout:g} s"
        self.body_late = f"the request body did not arrive within {self.body_timeout:g} s"
        tick = max(0.01, min(READ_TICK, self.header_timeout, self.body_timeout))  # 0 would be no timeout
        self.read_tick = struct.pack("ll", int(tick), int(tick % 1 * 1_000_000))
        # Closing connections still draining, oldest first, with when to stop waiting.
        self.lingering: dict[Connection, float] = {}

    @classmethod
    def check_config(cls, cfg: Any, log: Any) -> None:
        """Nothing to check: gthread's warning about keep-alive does not apply here."""

    def handle_quit(self, sig: int, frame: Any) -> None:
        """Quick shutdown (SIGQUIT from the master, SIGINT from a terminal): leave at the loop's next turn.

        gunicorn raises SystemExit from this handler, wherever the main thread happens to
        be. Raised between a lock's acquire and the `try` that releases it (logging's
        handler lock does that), the lock stays held for good: every request thread that
        logs then blocks, the interpreter waits for them at exit, and the master kills the
        worker after graceful_timeout (the 30 s SIGINT hang). Here the loop ends as on
        SIGTERM, without waiting for open connections; requests already running finish
        (their sends are bounded) before the process exits.
        """
        self.alive = False
        self.cfg.set("graceful_timeout", 0)  # this process's copy: skip the wait for connections
        self.cfg.worker_int(self)

    def accept(self, listener: socket.socket) -> None:
        """Take a new connection, as gthread does, as a `Connection`."""
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        self.enqueue_req(Connection(self, sock, client, listener.getsockname()))

    def finish_request(self, conn: Connection, fs: Any) -> None:
        super().finish_request(conn, fs)
        if self.pending_conns and self.pending_conns[-1] is conn:  # it has sent nothing yet
            # It waits in the poller until its head is due at most, not keepalive seconds more.
            conn.timeout = min(conn.timeout, conn.first_head_due)

    def handle_request(self, req: Request, conn: Connection) -> bool:
        req.body = wire.RequestBody(req.body, req)
        conn.read_deadline.set(time.monotonic() + self.body_timeout, self.body_late)
        try:
            return super().handle_request(req, conn)
        finally:
            # What the app left unread is drained by gthread, within its own bounds.
            conn.read_deadline.clear()

    def _keepalive_after(self, conn: Connection, keepalive: bool) -> bool:
        try:
            return super()._keepalive_after(conn, keepalive)
        except wire.WireError:
            # The body the app did not read turned out malformed while it was drained:
            # the answer is out already, so only close (gthread would write a second one).
            return False

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer what gunicorn refuses with the error JSON and one log line, neither quoting the request."""
        status, message = wire.refusal(exc)
        if not isinstance(req, Request):  # InvalidHeader may carry the request it was found in
            req = getattr(exc, "req", None) if isinstance(getattr(exc, "req", None), Request) else None
        request_id = wire.request_id_of(req)
        fields: dict[str, Any] = {"request_id": request_id, "status": status,
                                  "remote_addr": addr[0] if isinstance(addr, tuple) else None}
        if req is not None:
            fields.update(method=req.method, path=(req.path or "")[:200])
        if status == 500:  # not the client's doing (a 501 is)
            self.log.error("error handling request", exc_info=exc, extra=fields)
        else:
            self.log.warning(f"request refused: {message}", extra=fields)
        try:
            util.write_nonblock(client, wire.error_response(status, message, request_id))
        except Exception:
            self.log.debug("Failed to send error message.")

    def linger(self, conn: Connection) -> None:
        """Close `conn` as gunicorn's close_graceful does, from the poller instead of a blocking wait.

        After the FIN, what the client still sends is read, so that unread bytes do not
        turn the close into a reset that can destroy the answer in flight. close_graceful
        waits for that in the main loop, up to 2 s per client that keeps its end open: a
        few dozen such clients stall the worker until gunicorn kills it.
        """
        sock = conn.sock
        if len(self.lingering) >= self.worker_connections:
            util.close(sock)
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, partial(self._drain_lingering, conn))
        except (OSError, ValueError, KeyError):
            util.close(sock)
            return
        self.lingering[conn] = time.monotonic() + LINGER_SECONDS

    def _drain_lingering(self, conn: Connection, sock: socket.socket) -> None:
        try:
            data = sock.recv(LINGER_MAX_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        conn.lingered += len(data)
        if not data or conn.lingered >= LINGER_MAX_BYTES:
            self._end_linger(conn)

    def _end_linger(self, conn: Connection) -> None:
        del self.lingering[conn]
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        util.close(conn.sock)

    def murder_keepalived(self, force: bool = False) -> None:
        """Close kept-alive connections idle past keepalive and lingering ones past their time, or all.

        At the cap, also close the connections that have sent nothing (for FIRST_BYTE_WAIT
        at least): they leave their slots to those waiting in the kernel's queue, so idle
        connections cannot keep a worker from accepting until their heads are due.
        """
        super().murder_keepalived(force)
        if self.pending_conns and self.nr_conns >= self.worker_connections:
            for conn in self.pending_conns:
                conn.timeout = 0
            self.murder_pending()
        now = time.monotonic()
        while self.lingering:
            conn, until = next(iter(self.lingering.items()))
            if until > now and not force:
                break
            self._end_linger(conn)


def available_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def bind_address(host: str, port: int) -> str:
    """gunicorn's ``HOST:PORT`` form, with an IPv6 host in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def settings(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The service's gunicorn settings from `env` (the process environment by default).

    Raises `ConfigError` naming WEB_CONCURRENCY or GUNICORN_THREADS when it is not a
    whole number greater than 0, or HTTP_HEADER_TIMEOUT or HTTP_BODY_TIMEOUT when it is
    not a number of seconds (the workers read them). Other variables are checked by
    `on_starting`.
    """
    env = os.environ if env is None else env
    read_timeouts(env)
    loglevel = env.get("LOG_LEVEL", "info").strip().lower()
    return {
        "bind": [bind_address(env.get("HTTP_BIND_HOST", "0.0.0.0"), _lenient_port(env))],  # noqa: S104
        "workers": _count(env, "WEB_CONCURRENCY") or _default_workers(env),
        "worker_class": WORKER_CLASS,
        # One thread per in-flight send: 64 covers 64 concurrent sends of 100 ms per worker.
        "threads": _count(env, "GUNICORN_THREADS") or DEFAULT_THREADS,
        # A worker is killed only when its main loop stalls; in-flight sends are bounded, so
        # SIGTERM waits for the longest of them (see longest_send_s).
        "timeout": 30,
        "graceful_timeout": graceful_timeout(env),
        "keepalive": 5,
        "accesslog": "-",
        "errorlog": "-",
        "loglevel": loglevel if loglevel in LOG_LEVELS else "info",
        "logger_class": GunicornLogger,
        "capture_output": False,
        "max_requests": 0,
        # gunicorn's runtime control socket is one fixed path per user, so two instances on
        # one host would fight over it; nothing here needs it.
        "control_socket_disable": True,
        "on_starting": on_starting,
        "nworkers_changed": nworkers_changed,
        "post_worker_init": post_worker_init,
        "child_exit": child_exit,
        "worker_exit": worker_exit,
    }


def worker_count(env: Mapping[str, str] | None = None) -> int:
    """The workers `sms-service serve` runs without flags: WEB_CONCURRENCY, then GUNICORN_CMD_ARGS.

    Raises `ConfigError` naming a wrong serving variable, or GUNICORN_CMD_ARGS when
    gunicorn cannot read it.
    """
    env = os.environ if env is None else env
    workers = settings(env)["workers"]
    cmd_args = env.get("GUNICORN_CMD_ARGS", "").strip()
    if cmd_args:
        from gunicorn.config import Config

        try:
            with contextlib.redirect_stderr(io.StringIO()):  # not argparse's usage screen
                parsed = Config().parser().parse_args(shlex.split(cmd_args))
        except (SystemExit, ValueError):
            raise ConfigError("GUNICORN_CMD_ARGS cannot be read as gunicorn's command-line options") from None
        if parsed.workers is not None:
            workers = parsed.workers
    return workers


# Past the provider calls of a send: its storage writes (SQLite may wait out a 3 s busy
# timeout), the answer, and the worker noticing SIGTERM up to a second after the master
# sent it (both count graceful_timeout from their own moment).
SHUTDOWN_MARGIN_S = 10
MIN_GRACEFUL_TIMEOUT = 30


def longest_send_s(env: Mapping[str, str]) -> float:
    """The longest a send can take in provider calls: for each provider in failover order,
    its balance check (when on) and its send, each bounded by PROVIDER_TIMEOUT.

    A configuration that does not load counts as the default one (start-up names it).
    """
    try:
        service = load_settings(env)
    except ConfigError:
        return _lenient_seconds(env, "PROVIDER_TIMEOUT", 10)
    calls = sum(2 if service.balance_checks.get(name) else 1 for name in service.providers)
    return calls * service.provider_timeout


def graceful_timeout(env: Mapping[str, str]) -> int:
    """Seconds SIGTERM waits for the requests in flight: the longest send and a margin, 30 at least."""
    return max(MIN_GRACEFUL_TIMEOUT, math.ceil(longest_send_s(env) + SHUTDOWN_MARGIN_S))


def packaged_settings() -> dict[str, Any]:
    """`settings()` of the process environment, with the process prepared to serve.

    The first time in a process, also runs the start-up checks (every variable, each
    provider, the storage opened and written), so that a configuration that cannot serve
    stops before gunicorn starts, let alone listens. Raises SystemExit(1) after one JSON
    line naming the variable to fix.
    """
    global _checked
    try:
        packaged = settings()
        if not _checked:  # a reload (SIGHUP) reads this file again: the service is running
            level = os.environ.get("LOG_LEVEL", "info").strip().lower()
            configure_logging(level if level in LOG_LEVELS else "info")
            checked = check_startup()
            _checked = True
            log.info(f"state {checked.state}")
    except ConfigError as exc:
        _refuse(exc.message)
    _metrics_directory()
    os.environ[PACKAGED_MARKER] = "1"
    return packaged


_checked = False


def _metrics_directory() -> None:
    """Give the workers a directory to share their metrics in, unless the operator chose one.

    prometheus_client's multiprocess mode sums the workers' files; it must see the
    variable before it is first imported (see sms_service.metrics). A directory made here
    is removed when this process, the master, exits.
    """
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    if "prometheus_client" in sys.modules:  # too late: the workers would count alone
        log.warning("prometheus_client was imported before the metrics directory was set: "
                    "/-/metrics will show one worker's figures at most")
    directory = tempfile.mkdtemp(prefix="sms-service-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    atexit.register(_remove_directory, directory, os.getpid())


def _remove_directory(directory: str, owner: int) -> None:
    if os.getpid() == owner:  # a forked worker runs the exit handlers too
        shutil.rmtree(directory, ignore_errors=True)


def on_starting(server: Arbiter) -> None:
    """Refuse a worker count the storage cannot serve, with one line that names the variable.

    Whatever set it (-w, GUNICORN_CMD_ARGS, a config file, WEB_CONCURRENCY), this is the
    count gunicorn is about to fork; the rest was checked by `packaged_settings`. Raises
    SystemExit(1) after that line.
    """
    level = server.cfg.loglevel.lower()
    configure_logging(level if level in LOG_LEVELS else "info")
    try:
        check_worker_count(load_settings(), server.cfg.workers)
        if not (server.LISTENERS or server.cfg.reuse_port or os.environ.get("LISTEN_FDS")
                or os.environ.get("GUNICORN_FD")):  # gunicorn binds them itself next
            check_addresses_free(server.cfg.address)
    except ConfigError as exc:
        server.log.critical(f"configuration error: {exc.message}")
        sys.exit(1)
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):  # stale files of a previous run would be summed in
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))


def check_addresses_free(addresses: list[Any]) -> None:
    """Raise `ConfigError` naming HTTP_PORT when another process listens on one of `addresses`.

    gunicorn would try five times, a second apart, logging an ERROR each time, then stop
    with no hint of what to change.
    """
    for address in addresses:
        if not isinstance(address, tuple):  # a unix socket: gunicorn's to handle
            continue
        host, port = address[0], address[1]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            try:
                probe.bind((host, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    continue  # anything else is gunicorn's to say
                raise ConfigError(
                    f"HTTP_PORT {port} on {host} is in use by another process (another sms-service?): "
                    "stop it, or choose another port with `sms-service serve --port` or HTTP_PORT"
                ) from None


def nworkers_changed(server: Arbiter, new_value: int, old_value: int | None) -> None:
    """Undo a growth of the worker count (SIGTTIN, a reload) that the storage cannot serve."""
    if old_value is None or new_value <= old_value:  # the start is on_starting's to check
        return
    try:
        check_worker_count(load_settings(), new_value)
    except ConfigError as exc:
        server.log.error(f"worker count stays {old_value}: {exc.message}")
        server.num_workers = old_value


def post_worker_init(worker: Any) -> None:
    """Start the webhook deliverer and the reconciler; readiness turns 503 once the worker is told to stop."""
    import signal

    from sms_service import lifecycle

    original = signal.getsignal(signal.SIGTERM)
    webhooks = _services(worker).webhooks if _services(worker) is not None else None
    if webhooks is not None:
        webhooks.start()  # here, in the worker: threads do not survive the fork
    reconciler = _services(worker).reconciler if _services(worker) is not None else None
    if reconciler is not None:
        reconciler.start()  # every worker runs one; the lease in STORAGE_URI lets one work

    def on_sigterm(signum: int, frame: Any) -> None:
        lifecycle.begin_shutdown()
        if webhooks is not None:
            webhooks.stop_claiming()  # what is in flight ends in worker_exit
        if callable(original):
            original(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)


def _services(worker: Any) -> Any:
    return getattr(getattr(worker, "wsgi", None), "extensions", {}).get("sms_service")


def child_exit(server: Arbiter, worker: Any) -> None:
    """Drop the metrics of a dead worker's live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server: Arbiter, worker: Any) -> None:
    """Let webhook attempts in flight end, then close the provider's and the storage's connections."""
    services = _services(worker)
    if services is not None:
        if services.webhooks is not None:
            # Within each attempt's deadline; what is unfinished stays in the outbox.
            services.webhooks.stop()
        if services.reconciler is not None:
            services.reconciler.stop()  # gives the lease back: another worker takes over at once
        for route in services.failover.routes:
            route.provider.close()
        services.storage.close()


def wsgi_app() -> Flask:
    """Build the app for a WSGI server, logging JSON lines at LOG_LEVEL.

    Under gunicorn without the packaged settings, logs one ERROR line and raises
    SystemExit with gunicorn's "app failed to load" status, so the master stops instead
    of serving on a sync worker. Raises `ConfigError` on bad configuration.
    """
    from sms_service.app import create_app

    configure_logging(os.environ.get("LOG_LEVEL", "info").strip().lower() or "info")
    if os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn/") and PACKAGED_MARKER not in os.environ:
        log.error(
            "gunicorn is serving the app without the service's packaged settings (threaded "
            "workers, HTTP_PORT, JSON logs, the storage check): start it with `sms-service serve`, "
            "or `gunicorn -c gunicorn.conf.py wsgi:app` from the source tree"
        )
        sys.exit(Arbiter.APP_LOAD_ERROR)
    return create_app()


class ServiceApplication(BaseApplication):
    """gunicorn in this process: packaged settings, then GUNICORN_CMD_ARGS, then `overrides`."""

    def __init__(self, overrides: Mapping[str, Any] | None = None) -> None:
        self.overrides = dict(overrides or {})
        super().__init__(prog="sms-service serve")

    def load_config(self) -> None:
        for name, value in packaged_settings().items():
            self.cfg.set(name, value)
        # As the gunicorn command does: its settings from the environment, over the
        # packaged ones (a config file named there is not read).
        from_env = self.cfg.parser().parse_args(self.cfg.get_cmd_args_from_env())
        for name, value in vars(from_env).items():
            if value is not None and name != "args":
                self.cfg.set(name.lower(), value)
        for name, value in self.overrides.items():
            self.cfg.set(name, value)

    def load(self) -> Callable:
        return wsgi_app()


def serve(
    host: str | None = None, port: int | None = None, workers: int | None = None, threads: int | None = None
) -> NoReturn:
    """Run gunicorn with the packaged settings until it stops; the arguments win over all else.

    Raises SystemExit with gunicorn's exit status (0 after SIGTERM), or 1 after one JSON
    line when the configuration is wrong.
    """
    overrides: dict[str, Any] = {}
    if host is not None or port is not None:
        env_host = os.environ.get("HTTP_BIND_HOST", "0.0.0.0")  # noqa: S104
        overrides["bind"] = [bind_address(host or env_host, port or _lenient_port(os.environ))]
    if workers is not None:
        overrides["workers"] = workers
    if threads is not None:
        overrides["threads"] = threads
    ServiceApplication(overrides).run()
    sys.exit(0)


def read_timeouts(env: Mapping[str, str]) -> tuple[float, float]:
    """HTTP_HEADER_TIMEOUT and HTTP_BODY_TIMEOUT in seconds; raises `ConfigError` naming a wrong one."""
    return (_read_timeout(env, "HTTP_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT),
            _read_timeout(env, "HTTP_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT))


def _refuse(message: str) -> NoReturn:
    configure_logging("info")
    log.critical(f"configuration error: {message}")
    sys.exit(1)


def _count(env: Mapping[str, str], name: str) -> int | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ConfigError(f"{name} must be a whole number greater than 0, got {text!r}")
    return int(text)


def _default_workers(env: Mapping[str, str]) -> int:
    # A storage that serves one process gets one worker by default: more would only be
    # refused. A wrong variable is named by on_starting, so ignore it here.
    try:
        if not load_settings(env).shared_storage:
            return 1
    except ConfigError:
        pass
    return available_cpus()


def _lenient_port(env: Mapping[str, str]) -> int:
    # A wrong HTTP_PORT is named by on_starting (load_settings), before anything binds.
    text = env.get("HTTP_PORT", "").strip()
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) < 65536 else DEFAULT_PORT


def _read_timeout(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text) if text.isascii() else math.nan
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_READ_TIMEOUT:
        raise ConfigError(f"{name} must be a number of seconds greater than 0 and at most "
                          f"{MAX_READ_TIMEOUT:g}, got {text!r}")
    return value


def _lenient_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        value = float(env.get(name, "") or default)
    except ValueError:
        return default
    return value if 0 < value < 1e6 else default

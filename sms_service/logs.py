"""JSON logging for the app and gunicorn: one object a line, with the request id."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import os
import re
import sys
import traceback

from flask import g, has_request_context
from gunicorn import glogging
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-Id"
# WSGI environ key under which POST /send leaves the fields of the message it sent.
SEND_LOG_FIELDS = "sms_service.send_log_fields"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# A random prefix per process and a counter: unique, and far cheaper than a uuid4 per
# request (set again after fork, so workers never share a prefix).
_id_prefix = os.urandom(6).hex()
_id_counter = itertools.count(1)


def _new_ids_after_fork() -> None:
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = os.urandom(6).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_new_ids_after_fork)


def request_id_from(header: str | None) -> str:
    """Take the caller's request id when it is sane, otherwise make one."""
    if header and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return f"{_id_prefix}{next(_id_counter):010x}"


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to every record logged inside a request."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and has_request_context():
            record.request_id = g.get("request_id")
        return True


class ServiceJsonFormatter(JsonFormatter):
    """JSON lines whose exceptions are one short field, never a multi-line trace."""

    def __init__(self, verbose: bool = False) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )
        self.verbose = verbose

    def formatException(self, ei) -> str:
        if self.verbose:
            return super().formatException(ei)
        # Where it broke and what broke, without the frames (or values) in between.
        frames = traceback.extract_tb(ei[2])
        where = f" at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno}" if frames else ""
        return f"{ei[0].__name__}{where}"


def json_handler(level: str = "info") -> logging.Handler:
    """A stdout handler writing JSON lines."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(ServiceJsonFormatter(verbose=level == "debug"))
    handler.addFilter(RequestIdFilter())
    return handler


def configure_logging(level: str) -> None:
    """Send every log record of the process to stdout as JSON at `level`."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(json_handler(level))
    root.setLevel(level.upper())
    # urllib3 puts request paths (with account ids, Kaleyra's SID a credential) in its
    # warnings and debug lines; it logs nothing at ERROR. See also provider_http.
    logging.getLogger("urllib3").setLevel(logging.ERROR)


class GunicornLogger(glogging.Logger):
    """gunicorn's error and access logs as JSON lines on stdout."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        level = cfg.loglevel.lower()
        for log in (self.error_log, self.access_log):
            for handler in list(log.handlers):
                log.removeHandler(handler)
            log.addHandler(json_handler(level))
            log.propagate = False

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled or not self.access_log.isEnabledFor(logging.INFO):
            return
        path = environ.get("PATH_INFO", "")
        status = int(str(resp.status).split(None, 1)[0]) if resp.status else 0
        # Probes are polled every few seconds: at info level they would drown the log.
        if path.startswith("/-/") and status < 400 and self.loglevel > logging.DEBUG:
            return
        request_id = next((v for k, v in (resp.headers or []) if k.lower() == "x-request-id"), None)
        # One line per request is the hottest log line there is: it is built here as the
        # formatter would build it (same keys, same order), without a LogRecord, filters
        # or the formatter's pass over every attribute of the record.
        line = {
            "level": "INFO", "logger": "gunicorn.access", "message": "request",
            **environ.get(SEND_LOG_FIELDS, {}),
            "request_id": request_id,
            "method": environ.get("REQUEST_METHOD"),
            "path": path[:200],
            "status": status,
            "duration_ms": round(request_time.total_seconds() * 1000, 1),
            "remote_addr": environ.get("REMOTE_ADDR"),
            "bytes": getattr(resp, "sent", None),
            "time": dt.datetime.now(dt.UTC).isoformat(),
        }
        text = json.dumps(line, default=str) + "\n"
        for handler in self.access_log.handlers:
            stream = getattr(handler, "stream", None)
            if stream is None:
                continue
            with handler.lock:
                try:
                    stream.write(text)
                    stream.flush()
                except (OSError, ValueError):
                    pass  # a closed stdout loses the line, never the request

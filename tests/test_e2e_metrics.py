"""End to end: /-/metrics carries every metric under each documented start, with no extra variable.

The service is started as the README says (`make run`, `sms-service serve`, `gunicorn -c
gunicorn.conf.py wsgi:app`), with the default number of workers and no
PROMETHEUS_MULTIPROC_DIR: the metrics must still be the whole deployment's, and a clean
stop must leave nothing in $TMPDIR.
"""

import json
import os
import socket

import pytest
from support.payloads import message
from support.service import GUNICORN_COMMAND, SERVE_COMMAND, Service
from test_e2e_ops import scrape

pytestmark = pytest.mark.e2e

MAKE_RUN = ("make", "--no-print-directory", "run")


@pytest.mark.parametrize("command", [MAKE_RUN, SERVE_COMMAND, GUNICORN_COMMAND],
                         ids=["make run", "sms-service serve", "gunicorn -c"])
def test_metrics_are_there_as_the_readme_starts_the_service(command):
    # make run names the console provider itself; the others are given it.
    env = {} if command is MAKE_RUN else {"SERVICE_PROVIDER": "console"}
    service = Service(env, workers=None, command=command, group=command is MAKE_RUN)
    assert "PROMETHEUS_MULTIPROC_DIR" not in service.env
    tmpdir = service.env["TMPDIR"]
    sends = 5
    with service:
        assert os.listdir(tmpdir), "the metrics directory lives in $TMPDIR while serving"
        for _ in range(sends):
            assert service.send(message()).status_code == 200
        assert service.send({"sender": "ACME"}).status_code == 400
        for _ in range(4):  # whichever worker answers, it reports every worker's sends
            samples = scrape(service.url)
            assert samples[("sms_messages_accepted_total", (("provider", "console"),))] == sends
            assert samples[("sms_send_requests_total", (("reason", "ok"), ("status_class", "2xx")))] == sends
            assert samples[("sms_send_requests_total", (("reason", "validation"), ("status_class", "4xx")))] == 1
            assert samples[("sms_provider_request_duration_seconds_count",
                            (("outcome", "accepted"), ("provider", "console")))] == sends
        service.stop()
    # Nothing is left listening.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", service.port), timeout=2).close()
    assert os.listdir(tmpdir) == []
    # make echoes its command and notes the signal; every line of the service is JSON.
    lines = service.log_text().splitlines()
    if command is MAKE_RUN:
        assert lines[0].endswith("sms-service serve")
        lines = [line for line in lines[1:] if not line.startswith("make: ")]
    records = [json.loads(line) for line in lines]
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")]

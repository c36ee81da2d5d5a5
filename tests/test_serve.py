"""End to end: `sms-service serve` and gunicorn with the packaged settings, as operators start them."""

import http.client
import json
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from support.payloads import message
from support.ports import free_port
from support.service import GUNICORN, GUNICORN_COMMAND, ROOT, SERVE_COMMAND, Service, twilio_env

pytestmark = pytest.mark.e2e

CONSOLE = {"SERVICE_PROVIDER": "console"}
MEMORY = {**CONSOLE, "STORAGE_URI": "memory://", "RATE_LIMIT_MAX_REQUESTS": "5"}


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_serve_from_another_directory_runs_the_packaged_configuration(tmp_path, redis_uri, fake_provider_server,
                                                                      fake_provider):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    service = Service({**twilio_env(fake_provider_server.url), "STORAGE_URI": redis_uri}, workers=1,
                      cwd=elsewhere)
    port, env_port = service.port, free_port()
    service.env["HTTP_PORT"] = str(env_port)  # the flags win over the variables
    service.command = [*SERVE_COMMAND, "--port", str(port), "--workers", "2", "--threads", "1"]
    with service:
        assert wait_for(lambda: len(service.worker_pids()) == 2)
        workers = service.worker_pids()
        assert all(parent_of(pid) == service.process.pid for pid in workers)  # gunicorn in-process
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{env_port}/-/healthz", timeout=2)
        # One thread each, so one connection each: two slow sends run side by side only
        # because the second connection goes to the other worker.
        fake_provider.mode, fake_provider.slow_seconds = "slow", 1
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=2) as pool:
            statuses = [r.status_code for r in pool.map(lambda _: service.send(message()), range(2))]
        assert statuses == [200, 200]
        assert time.monotonic() - started < 1.8
        for _ in range(3):  # whichever worker answers, it counts both workers' sends
            assert 'sms_messages_accepted_total{provider="twilio"} 2.0' in requests.get(
                f"{service.url}/-/metrics", timeout=5).text
        assert service.stop() == 0
    records = service.log_records()  # raises if any line is not JSON
    assert "Using worker: sms_service.serving.ThreadWorker" in {r["message"] for r in records}
    assert f"Listening at: http://127.0.0.1:{port} ({service.process.pid})" in {r["message"] for r in records}
    assert fake_provider.count() == 2
    assert not list(elsewhere.iterdir())  # nothing written to the working directory


def test_keep_alive_is_kept_and_a_worker_takes_no_more_connections_than_threads():
    service = Service(MEMORY, command=[*SERVE_COMMAND, "--threads", "2"])
    with service:
        first = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
        second = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
        try:
            for conn in (first, second):
                conn.request("GET", "/-/healthz")
                response = conn.getresponse()
                assert response.status == 200 and response.read()
                assert response.getheader("Connection") == "keep-alive"
            reused = first.sock
            first.request("GET", "/-/healthz")
            assert first.getresponse().status == 200
            assert first.sock is reused  # the same connection answered twice

            # Two threads, two kept-alive connections: a third waits in the kernel's queue.
            with socket.create_connection(("127.0.0.1", service.port), timeout=1.5) as third:
                third.sendall(b"GET /-/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                with pytest.raises(TimeoutError):
                    third.recv(100)
                first.close()
                third.settimeout(5)
                assert third.recv(100).startswith(b"HTTP/1.1 200 ")
        finally:
            first.close()
            second.close()


def test_workers_default_to_the_cpus_and_web_concurrency_wins(redis_uri):
    cpus = len(os.sched_getaffinity(0))
    env = {**CONSOLE, "STORAGE_URI": redis_uri}
    with Service(env, workers=None, command=SERVE_COMMAND) as default:
        assert wait_for(lambda: len(default.worker_pids()) == cpus)
        time.sleep(0.5)
    with Service(env, workers=cpus + 1, command=SERVE_COMMAND) as asked:
        assert wait_for(lambda: len(asked.worker_pids()) == cpus + 1)
        time.sleep(0.5)
    assert len(default.worker_pids()) == cpus
    assert len(asked.worker_pids()) == cpus + 1


OTHER_CONFIG = """\
from sms_service.serving import packaged_settings

globals().update(packaged_settings())
workers = 2
"""


@pytest.mark.parametrize(
    ("command", "env"),
    [
        ([GUNICORN, "-c", "gunicorn.conf.py", "-w", "2", "wsgi:app"], {}),
        ([GUNICORN, "-c", "gunicorn.conf.py", "--workers", "2", "wsgi:app"], {}),
        ([GUNICORN, "-c", "gunicorn.conf.py", "--workers=2", "wsgi:app"], {}),
        (GUNICORN_COMMAND, {"GUNICORN_CMD_ARGS": "--workers=2"}),
        (GUNICORN_COMMAND, {"WEB_CONCURRENCY": "2"}),
        ([GUNICORN, "-c", "{other_config}", "wsgi:app"], {}),
        ([*SERVE_COMMAND, "--workers", "2"], {}),
        (SERVE_COMMAND, {"GUNICORN_CMD_ARGS": "--workers=2"}),
        (SERVE_COMMAND, {"WEB_CONCURRENCY": "2"}),
    ],
    ids=["-w 2", "--workers 2", "--workers=2", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY", "config file",
         "serve --workers 2", "serve GUNICORN_CMD_ARGS", "serve WEB_CONCURRENCY"],
)
def test_memory_storage_refuses_two_workers_however_they_are_asked_for(tmp_path, command, env):
    other_config = tmp_path / "other.conf.py"
    other_config.write_text(OTHER_CONFIG)
    service = Service({**MEMORY, **env}, workers=1 if "WEB_CONCURRENCY" not in env else None,
                      command=[str(part).format(other_config=other_config) for part in command])
    with pytest.raises(RuntimeError, match="exited with 1"):
        service.start(timeout=15)
    assert service.process.returncode == 1
    records = service.log_records()
    refusals = [r for r in records if "STORAGE_URI" in r["message"]]
    assert len(refusals) == 1 and refusals[0]["level"] == "CRITICAL"
    assert "memory://" in refusals[0]["message"] and "2 workers" in refusals[0]["message"]
    assert service.worker_pids() == []


def test_two_workers_on_a_shared_storage_start_and_share_the_limit(redis_uri):
    env = {**MEMORY, "STORAGE_URI": redis_uri}
    with Service(env, command=[GUNICORN, "-c", "gunicorn.conf.py", "-w", "2", "wsgi:app"]) as service:
        assert wait_for(lambda: len(service.worker_pids()) == 2)
        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = [r.status_code for r in pool.map(lambda _: service.send(message()), range(10))]
    assert sorted(statuses) == [200] * 5 + [429] * 5


def test_sigttin_cannot_grow_a_memory_storage_past_one_worker():
    with Service(MEMORY) as service:
        assert wait_for(lambda: len(service.worker_pids()) == 1)
        os.kill(service.process.pid, signal.SIGTTIN)
        assert wait_for(lambda: "worker count stays 1" in service.log_text())
        time.sleep(1)
        assert len(service.worker_pids()) == 1
        assert requests.get(f"{service.url}/-/healthz", timeout=5).status_code == 200
    refusal = next(r for r in service.log_records() if "worker count stays 1" in r["message"])
    assert refusal["level"] == "ERROR" and "STORAGE_URI is memory://" in refusal["message"]


def test_sigttin_grows_a_shared_storage(redis_uri):
    with Service({**CONSOLE, "STORAGE_URI": redis_uri}) as service:
        assert wait_for(lambda: len(service.worker_pids()) == 1)
        os.kill(service.process.pid, signal.SIGTTIN)
        assert wait_for(lambda: len(service.worker_pids()) == 2)
    assert "worker count stays" not in service.log_text()


@pytest.mark.parametrize("preload", [False, True], ids=["lazy", "preload"])
def test_gunicorn_without_the_packaged_settings_refuses_to_serve(tmp_path, preload):
    # From another directory gunicorn finds no gunicorn.conf.py: a sync worker, text logs.
    port = free_port()
    command = [GUNICORN, *(["--preload"] if preload else []), "--pythonpath", str(ROOT),
               "-b", f"127.0.0.1:{port}", "wsgi:app"]
    service = Service(MEMORY, command=command, cwd=tmp_path)
    service.port = port
    with pytest.raises(RuntimeError, match="exited with 4"):
        service.start(timeout=15)
    errors = [json.loads(line) for line in service.log_text().splitlines() if line.startswith("{")]
    assert [e["level"] for e in errors if "sms-service serve" in e["message"]] == ["ERROR"]
    assert "gunicorn -c gunicorn.conf.py wsgi:app" in errors[-1]["message"]


@pytest.mark.parametrize("command", [GUNICORN_COMMAND, SERVE_COMMAND], ids=["gunicorn", "serve"])
@pytest.mark.parametrize("variable", ["WEB_CONCURRENCY", "GUNICORN_THREADS"])
def test_a_bad_serving_variable_is_named_in_one_line(command, variable):
    service = Service({**MEMORY, variable: "0"}, workers=None, command=command)
    with pytest.raises(RuntimeError, match="exited with 1"):
        service.start(timeout=15)
    records = service.log_records()
    assert len(records) == 1 and records[0]["level"] == "CRITICAL"
    assert records[0]["message"] == f"configuration error: {variable} must be a whole number greater than 0, got '0'"

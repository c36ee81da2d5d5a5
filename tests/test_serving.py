"""The packaged gunicorn settings, the worker-count check and the in-process gunicorn application."""

import os

import pytest

from sms_service import serving
from sms_service.config import load_settings
from sms_service.exceptions import ConfigError

SHARED = {"SERVICE_PROVIDER": "console", "STORAGE_URI": "redis://127.0.0.1:6379/0"}
MEMORY = {"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"}


def test_defaults():
    s = serving.settings(SHARED)
    assert s["bind"] == ["0.0.0.0:3000"]
    assert s["worker_class"] == "sms_service.serving.ThreadWorker"
    assert s["threads"] == 64
    assert s["workers"] == len(os.sched_getaffinity(0)) == serving.available_cpus()
    assert (s["timeout"], s["graceful_timeout"], s["keepalive"]) == (30, 30, 5)
    assert s["control_socket_disable"] is True
    assert s["loglevel"] == "info" and s["logger_class"].__name__ == "GunicornLogger"
    for hook in ("on_starting", "nworkers_changed", "post_worker_init", "child_exit", "worker_exit"):
        assert s[hook] is getattr(serving, hook)


def test_the_serving_variables_are_read():
    s = serving.settings({**SHARED, "HTTP_BIND_HOST": "127.0.0.1", "HTTP_PORT": "8080", "WEB_CONCURRENCY": "5",
                          "GUNICORN_THREADS": "8", "PROVIDER_TIMEOUT": "40", "LOG_LEVEL": "DEBUG"})
    assert (s["bind"], s["workers"], s["threads"]) == (["127.0.0.1:8080"], 5, 8)
    assert (s["graceful_timeout"], s["loglevel"]) == (50, "debug")  # one send of 40 s, 10 s to spare


@pytest.mark.parametrize(
    ("env", "seconds"),
    [
        ({}, 30),  # 10 + 10, but 30 at least
        ({"PROVIDER_TIMEOUT": "20"}, 30),
        ({"PROVIDER_TIMEOUT": "20", "CONSOLE_EMPTY_BALANCE_CHECK": "true"}, 50),  # balance check, then send
        ({"SERVICE_PROVIDER": "console,twilio", "PROVIDER_TIMEOUT": "15", "TWILIO_EMPTY_BALANCE_CHECK": "on"}, 55),
        ({"PROVIDER_TIMEOUT": "soon"}, 30),  # named at start-up; the default meanwhile
    ],
)
def test_shutdown_waits_for_every_provider_call_a_send_can_make(env, seconds):
    assert serving.settings({**SHARED, **env})["graceful_timeout"] == seconds


def test_a_quick_shutdown_never_raises_in_the_main_thread(process_env):
    app = serving.ServiceApplication({"threads": 2})
    worker = app.cfg.worker_class(0, os.getpid(), [], app, 30, app.cfg, app.cfg.logger_class(app.cfg))
    try:
        worker.alive = True
        worker.handle_quit(2, None)  # gunicorn's own would raise SystemExit here
        assert worker.alive is False
        assert worker.cfg.graceful_timeout == 0  # the wait for open connections is skipped
    finally:
        worker.tmp.close()


def test_an_ipv6_host_is_bracketed():
    assert serving.settings({**SHARED, "HTTP_BIND_HOST": "::"})["bind"] == ["[::]:3000"]


def test_memory_storage_defaults_to_one_worker_but_web_concurrency_wins():
    assert serving.settings(MEMORY)["workers"] == 1
    # Asked for explicitly, the count is kept: on_starting then refuses it.
    assert serving.settings({**MEMORY, "WEB_CONCURRENCY": "3"})["workers"] == 3


@pytest.mark.parametrize("variable", ["WEB_CONCURRENCY", "GUNICORN_THREADS"])
@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_bad_counts_name_the_variable(variable, value):
    with pytest.raises(ConfigError, match=f"^{variable} must be a whole number greater than 0"):
        serving.settings({**SHARED, variable: value})


def test_a_storage_for_one_process_refuses_several_workers():
    with pytest.raises(ConfigError) as info:
        serving.check_worker_count(load_settings(MEMORY), 3)
    message = info.value.message
    assert message.startswith("STORAGE_URI is memory://") and "3 workers" in message
    assert "multiply every limit" in message and "\n" not in message


@pytest.mark.parametrize("uri", ["redis://h:6379/0", "sqlite:////srv/state/sms.db"])
def test_shared_storages_serve_any_worker_count(uri):
    serving.check_worker_count(load_settings({**MEMORY, "STORAGE_URI": uri}), 16)


def test_one_worker_is_fine_on_memory_and_none_is_refused():
    serving.check_worker_count(load_settings(MEMORY), 1)
    with pytest.raises(ConfigError, match="0 workers"):
        serving.check_worker_count(load_settings(MEMORY), 0)


class _Log:
    def __init__(self):
        self.errors = []

    def error(self, message):
        self.errors.append(message)


class _Arbiter:
    """Just what the hook touches: the log and the worker count (its setter calls the hook)."""

    def __init__(self, workers):
        self.log, self._workers = _Log(), workers

    @property
    def num_workers(self):
        return self._workers

    @num_workers.setter
    def num_workers(self, value):
        old, self._workers = self._workers, value
        serving.nworkers_changed(self, value, old)


def test_a_worker_count_growing_past_the_storage_is_set_back(monkeypatch):
    for name, value in MEMORY.items():
        monkeypatch.setenv(name, value)
    arbiter = _Arbiter(1)
    arbiter.num_workers += 1  # what SIGTTIN does
    assert arbiter.num_workers == 1
    assert len(arbiter.log.errors) == 1
    assert arbiter.log.errors[0].startswith("worker count stays 1: STORAGE_URI is memory://")


def test_a_worker_count_growing_on_a_shared_storage_is_kept(monkeypatch):
    for name, value in SHARED.items():
        monkeypatch.setenv(name, value)
    arbiter = _Arbiter(2)
    arbiter.num_workers += 1
    assert arbiter.num_workers == 3 and arbiter.log.errors == []


@pytest.fixture
def process_env(monkeypatch, tmp_path, redis_uri):
    """The environment the in-process application reads, restored after the test."""
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_CMD_ARGS", "HTTP_PORT", "HTTP_BIND_HOST",
                 serving.PACKAGED_MARKER):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    for name, value in {**SHARED, "STORAGE_URI": redis_uri}.items():  # the start-up checks write to it
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_the_application_layers_packaged_settings_then_gunicorn_cmd_args_then_flags(process_env):
    process_env.setenv("WEB_CONCURRENCY", "3")
    process_env.setenv("GUNICORN_THREADS", "7")
    process_env.setenv("HTTP_PORT", "4000")
    process_env.setenv("GUNICORN_CMD_ARGS", "--workers=4 --timeout 11")
    cfg = serving.ServiceApplication({"threads": 2}).cfg
    assert (cfg.workers, cfg.threads, cfg.timeout) == (4, 2, 11)
    assert cfg.bind == ["0.0.0.0:4000"]
    assert cfg.worker_class_str == "sms_service.serving.ThreadWorker"
    assert os.environ[serving.PACKAGED_MARKER] == "1"


def test_the_worker_takes_one_connection_per_thread_and_keeps_them_alive(process_env):
    app = serving.ServiceApplication({"threads": 3})
    worker = app.cfg.worker_class(0, os.getpid(), [], app, 30, app.cfg, app.cfg.logger_class(app.cfg))
    try:
        assert isinstance(worker, serving.ThreadWorker)
        assert (worker.worker_connections, worker.max_keepalived) == (3, 3)
    finally:
        worker.tmp.close()

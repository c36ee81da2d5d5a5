"""`sms-service check-config` checks what start-up checks, one line per problem, and says where the state lives."""

import subprocess
import sys
from pathlib import Path

import pytest
from support.ports import free_port

from sms_service import cli
from sms_service.status.callbacks import callback_token

CONSOLE = {"SERVICE_PROVIDER": "console"}
CLEARED = ("STORAGE_URI", "STATE_DIR", "STATE_DIRECTORY", "XDG_STATE_HOME", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS",
           "GUNICORN_THREADS", "ALLOWED_COUNTRIES", "SEGMENT_BUDGETS", "SERVICE_PROVIDER")


@pytest.fixture
def check(monkeypatch, capsys):
    """Run check-config with these variables over a clean environment; returns (status, stdout, error lines)."""
    def run(env):
        for name in CLEARED:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        status = cli.main(["check-config"])
        out, err = capsys.readouterr()
        errors = [line for line in err.splitlines() if line.startswith("configuration error: ")]
        return status, out, errors
    return run


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"STORAGE_URI": "memory://", "WEB_CONCURRENCY": "2"},
         "STORAGE_URI is memory:// but gunicorn would run 2 workers"),
        ({"STORAGE_URI": "memory://", "GUNICORN_CMD_ARGS": "--workers 3"},
         "STORAGE_URI is memory:// but gunicorn would run 3 workers"),
        ({"STATE_DIR": "/proc/x"}, "STATE_DIR cannot hold the state file /proc/x/sms-service.db"),
        ({"ALLOWED_COUNTRIES": "US,UK"}, "ALLOWED_COUNTRIES: 'UK' is not an ISO 3166 alpha-2 country code "
                                         "that phone numbers belong to: did you mean GB?"),
        ({"ALLOWED_COUNTRIES": "XX"}, "ALLOWED_COUNTRIES: 'XX' is not an ISO 3166 alpha-2 country code"),
        ({"ALLOWED_COUNTRIES": "US,,CA"}, "ALLOWED_COUNTRIES has an empty entry"),
        ({"SEGMENT_BUDGETS": "UK=100/1d"}, "SEGMENT_BUDGETS entry 'UK=100/1d': 'UK' is not an ISO 3166"),
        ({"SERVICE_PROVIDER": "twilio"}, "TWILIO_ACCOUNT_SID"),
        ({"SERVICE_PROVIDER": "console,kaleyra"}, "KALEYRA_"),
        ({"GUNICORN_THREADS": "0"}, "GUNICORN_THREADS must be a whole number greater than 0"),
        ({"GUNICORN_CMD_ARGS": "--no-such-flag"}, "GUNICORN_CMD_ARGS cannot be read"),
    ],
    ids=["memory, 2 workers", "memory, GUNICORN_CMD_ARGS workers", "state dir", "UK", "XX", "empty entry",
         "budget UK", "twilio variables", "second provider's variables", "threads", "GUNICORN_CMD_ARGS"],
)
def test_each_bad_configuration_is_one_line_and_a_failure(check, env, expected):
    status, out, errors = check({**CONSOLE, **env})
    assert status == 1
    assert out == ""
    assert len(errors) == 1, errors
    assert expected in errors[0]


def test_a_redis_nobody_listens_on_is_an_error(check):
    status, _, errors = check({**CONSOLE, "STORAGE_URI": f"redis://:pw-secret-1@127.0.0.1:{free_port()}/0"})
    assert status == 1
    (error,) = errors
    assert error.startswith("configuration error: STORAGE_URI redis://:***@127.0.0.1:")
    assert "cannot be reached or written" in error and "pw-secret-1" not in error


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("redis+sentinel://:pw-secret-1@10.0.0.1:26379,10.0.0.2:26379", "STORAGE_URI has no service name"),
        ("redis+sentinel://10.0.0.1:26379,10.0.0.2:2637x/mymaster", "STORAGE_URI has a bad port '2637x'"),
        ("redis+cluster://", "STORAGE_URI names no cluster node"),
    ],
    ids=["sentinel without service", "sentinel bad port", "cluster without node"],
)
def test_a_malformed_sentinel_or_cluster_uri_is_one_line_not_a_traceback(check, uri, expected):
    status, out, errors = check({**CONSOLE, "STORAGE_URI": uri})
    assert status == 1
    assert out == ""
    (error,) = errors
    assert error.startswith(f"configuration error: {expected}")
    assert "pw-secret-1" not in error


def test_a_data_command_names_a_malformed_sentinel_uri(monkeypatch, capsys):
    monkeypatch.setenv("STORAGE_URI", "redis+sentinel://10.0.0.1:26379")
    assert cli.main(["suppressions", "export"]) == 1
    assert capsys.readouterr().err.startswith("configuration error: STORAGE_URI has no service name")


def test_independent_problems_each_get_their_line(check):
    status, _, errors = check({**CONSOLE, "STATE_DIR": "/proc/x", "ALLOWED_COUNTRIES": "UK", "GUNICORN_THREADS": "x"})
    assert status == 1
    assert [e.split()[2] for e in errors] == ["GUNICORN_THREADS", "ALLOWED_COUNTRIES:", "STATE_DIR"]


def test_ok_says_where_the_state_lives_in_the_sqlite_file(check, tmp_path):
    status, out, errors = check({**CONSOLE, "STATE_DIR": str(tmp_path / "state"), "WEB_CONCURRENCY": "3"})
    assert (status, errors) == (0, [])
    assert out == (f"configuration OK: provider console, 3 workers, state in the SQLite file "
                   f"{tmp_path / 'state' / 'sms-service.db'}\n")


def test_ok_says_which_redis_holds_the_state(check, redis_uri):
    status, out, _ = check({**CONSOLE, "STORAGE_URI": redis_uri, "WEB_CONCURRENCY": "2"})
    assert status == 0
    assert out == f"configuration OK: provider console, 2 workers, state in the Redis at {redis_uri}\n"


def test_ok_on_memory_says_it_is_lost_at_restart(check):
    status, out, _ = check({**CONSOLE, "STORAGE_URI": "memory://"})
    assert status == 0
    assert out == ("configuration OK: provider console, 1 worker, state in each process's memory (memory://): "
                   "lost at every restart\n")


def test_the_command_exits_non_zero_as_a_process(tmp_path):
    script = Path(sys.executable).with_name("sms-service")
    result = subprocess.run([str(script), "check-config"], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SERVICE_PROVIDER": "console",
                                 "ALLOWED_COUNTRIES": "UK"})
    assert result.returncode == 1
    assert "did you mean GB?" in result.stderr


def test_callback_token_refuses_an_unset_secret(monkeypatch, capsys):
    monkeypatch.delenv("CALLBACK_SECRET", raising=False)
    assert cli.main(["callback-token", "console"]) == 1
    assert capsys.readouterr().err.startswith("configuration error: CALLBACK_SECRET is not set in this environment")
    monkeypatch.setenv("CALLBACK_SECRET", "local-dev-secret-123")
    assert cli.main(["callback-token", "console"]) == 0
    assert capsys.readouterr().out.strip() == callback_token("local-dev-secret-123", "console")


def test_a_token_of_an_empty_secret_is_refused():
    with pytest.raises(ValueError, match="CALLBACK_SECRET is empty"):
        callback_token("", "console")

"""The sms-service console script."""

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import sms_service

SCRIPT = Path(sys.executable).with_name("sms-service")


def run(*args, env=None):
    base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env={**base, **(env or {})},
                          timeout=60)


def test_providers_lists_name_distribution_version():
    result = run("providers")
    assert result.returncode == 0
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert rows["console"] == ["sms-service", sms_service.__version__]
    assert rows["twilio"] == ["sms-service-twilio", metadata.version("sms-service-twilio")]
    assert rows["kaleyra"] == ["sms-service-kaleyra", metadata.version("sms-service-kaleyra")]


def test_check_config_ok():
    result = run("check-config", env={"SERVICE_PROVIDER": "console"})
    assert result.returncode == 0
    assert "configuration OK: provider console" in result.stdout


def test_check_config_names_the_bad_variable():
    result = run("check-config", env={"SERVICE_PROVIDER": "console", "RATE_LIMIT_TIME_WINDOW": "soon"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("configuration error: RATE_LIMIT_TIME_WINDOW")


def test_check_config_never_prints_a_secret():
    secret = "S3cr3t" + "x" * 26
    result = run("check-config", env={"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": "nope",
                                      "TWILIO_AUTH_TOKEN": secret})
    assert result.returncode == 1
    assert "TWILIO_ACCOUNT_SID" in result.stderr
    assert secret not in result.stdout + result.stderr


def test_serve_lists_its_flags_and_their_variables():
    result = run("serve", "--help")
    assert result.returncode == 0
    for flag, variable in [("--port", "HTTP_PORT"), ("--bind", "HTTP_BIND_HOST"), ("--workers", "WEB_CONCURRENCY"),
                           ("--threads", "GUNICORN_THREADS")]:
        assert flag in result.stdout and variable in result.stdout


@pytest.mark.parametrize(("flag", "value"), [("--workers", "0"), ("--threads", "-2"), ("--port", "70000"),
                                             ("--port", "http")])
def test_serve_refuses_a_bad_flag(flag, value):
    result = run("serve", flag, value, env={"SERVICE_PROVIDER": "console"})
    assert result.returncode == 2
    assert f"argument {flag}" in result.stderr


def test_serve_names_a_bad_web_concurrency_in_one_json_line():
    result = run("serve", env={"SERVICE_PROVIDER": "console", "WEB_CONCURRENCY": "two"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert record["level"] == "CRITICAL"
    assert record["message"] == "configuration error: WEB_CONCURRENCY must be a whole number greater than 0, got 'two'"


def test_serve_takes_an_empty_web_concurrency_as_unset():
    # gunicorn alone would stop on int(""); the next check to speak is the threads'.
    result = run("serve", env={"SERVICE_PROVIDER": "console", "WEB_CONCURRENCY": "", "GUNICORN_THREADS": "x"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "GUNICORN_THREADS must be a whole number greater than 0, got 'x'" in json.loads(result.stdout)["message"]

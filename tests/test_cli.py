"""The sms-service console script."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(sys.executable).with_name("sms-service")


def run(*args, env=None):
    base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env={**base, **(env or {})},
                          timeout=60)


def test_providers_lists_name_distribution_version():
    result = run("providers")
    assert result.returncode == 0
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    assert rows["console"] == ["sms-service", "0.1.0"]
    assert rows["twilio"] == ["sms-service-twilio", "0.1.0"]
    assert rows["kaleyra"] == ["sms-service-kaleyra", "0.1.0"]


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

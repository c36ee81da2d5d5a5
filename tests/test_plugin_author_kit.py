"""The plugin author kit, as docs/plugins.md tells a newcomer to use it.

`sms-service new-plugin`, install it, run its own tests (the conformance suite), install
it into the service and send through it, all in a temporary folder and offline.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.payloads import message
from support.service import Service

from sms_service.cli import main
from sms_service.plugin_template import fields
from sms_service.provider import PLUGIN_API
from sms_service.testing import Answer, LoopbackProvider

SCRIPT = Path(sys.executable).with_name("sms-service")
PIP = [sys.executable, "-m", "pip"]
OFFLINE = ["--no-index", "--no-build-isolation", "--no-deps"]
NAME = "kit_demo"


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "SERVICE_", "KIT_DEMO_"))}


@pytest.mark.e2e
def test_new_plugin_installs_passes_its_tests_and_sends(tmp_path):
    # Step 1 of the guide: the skeleton.
    made = subprocess.run([str(SCRIPT), "new-plugin", NAME], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=clean_env())
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "sms-service-kit-demo"
    assert (folder / "pyproject.toml").is_file() and (folder / "sms_service_kit_demo" / "provider.py").is_file()
    assert "TODO" in (folder / "sms_service_kit_demo" / "provider.py").read_text()
    # Step 2: install it editable with its test extra (offline here), then its own tests.
    subprocess.run([*PIP, "install", "--quiet", *OFFLINE, "-e", f"{folder}[test]"], check=True,
                   capture_output=True, timeout=300)
    try:
        tests = subprocess.run([sys.executable, "-m", "pytest"], cwd=folder, capture_output=True, text=True,
                               timeout=600, env=clean_env())
        assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
        assert " passed" in tests.stdout and "failed" not in tests.stdout
        listing = subprocess.run([str(SCRIPT), "providers"], capture_output=True, text=True, check=True,
                                 timeout=60).stdout
        assert "kit_demo" in listing and "sms-service-kit-demo 0.1.0" in listing
        # Step 3: the service sends through it (the provider's API played on loopback).
        api = LoopbackProvider(lambda request: Answer(200, {"id": "kit-0001", "status": "queued"}))
        with api, Service({"SERVICE_PROVIDER": NAME, "KIT_DEMO_API_KEY": "kit-secret-key-0123",
                           "KIT_DEMO_BASE_URL": api.url}) as service:
            payload = message()
            response = service.send(payload)
            log = service.log_text()
        assert response.status_code == 200, response.text
        assert response.json()["sid"] == "kit-0001"
        (sent,) = api.requests
        assert (sent.method, sent.path) == ("POST", "/messages")
        assert sent.json() == {"from": payload["sender"], "to": payload["receiver"], "text": payload["body"]}
        assert sent.headers["authorization"] == "Bearer kit-secret-key-0123"
        assert "kit-secret-key-0123" not in log
    finally:
        subprocess.run([*PIP, "uninstall", "--yes", "--quiet", "sms-service-kit-demo"], check=True,
                       capture_output=True, timeout=120)


def test_new_plugin_refuses_a_bad_name_a_provider_s_name_or_an_existing_folder(tmp_path, capsys):
    assert main(["new-plugin", "Bad-Name", "--directory", str(tmp_path / "x")]) == 1
    assert "not a provider name" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    for taken in ("console", "twilio"):  # built in, and installed
        assert main(["new-plugin", taken, "--directory", str(tmp_path / taken)]) == 1
        assert "already the name of an installed provider" in capsys.readouterr().err
        assert not (tmp_path / taken).exists()
    (tmp_path / "taken").mkdir()
    assert main(["new-plugin", "fine", "--directory", str(tmp_path / "taken")]) == 1
    assert "already exists" in capsys.readouterr().err


def test_new_plugin_writes_every_file_filled_in(tmp_path):
    assert main(["new-plugin", "acme_sms", "--directory", str(tmp_path / "d")]) == 0
    written = sorted(str(p.relative_to(tmp_path / "d")) for p in (tmp_path / "d").rglob("*") if p.is_file())
    assert written == ["README.md", "pyproject.toml", "sms_service_acme_sms/__init__.py",
                       "sms_service_acme_sms/provider.py", "tests/test_conformance.py",
                       "tests/test_entry_point.py"]
    for path in (tmp_path / "d").rglob("*.*"):
        text = path.read_text()
        for key in fields("acme_sms"):
            assert "{" + key + "}" not in text, f"{path}: {key} not filled in"
    pyproject = (tmp_path / "d" / "pyproject.toml").read_text()
    assert 'acme_sms = "sms_service_acme_sms.provider:AcmeSmsProvider"' in pyproject
    provider = (tmp_path / "d" / "sms_service_acme_sms" / "provider.py").read_text()
    assert f"PLUGIN_API = ({PLUGIN_API[0]}, {PLUGIN_API[1]})" in provider
    compile(provider, "provider.py", "exec")


def test_the_guide_gives_the_steps_this_test_follows():
    guide = (Path(__file__).parent.parent / "docs" / "plugins.md").read_text()
    for step in ("sms-service new-plugin acme", "pip install -e '.[test]'", "pytest", "sms-service providers",
                 "SERVICE_PROVIDER=acme", "ACME_BASE_URL", "LoopbackProvider", f"PLUGIN_API = ({PLUGIN_API[0]}, {PLUGIN_API[1]})",
                 "pip install --no-index --no-build-isolation --no-deps -e '.[test]'"):
        assert step in guide, step
    for name in ("Message", "Receipt", "Balance", "Provider", "ConfigError", "MessageRejected",
                 "ProviderRateLimited", "ProviderAuthError", "ProviderUnavailable", "ProviderUnreachable",
                 "ProviderTimeout", "CallbackRefused", "ProviderHTTP", "mask_number", "retry_after",
                 "provider_code", "http_status", "worker_exit"):
        assert f"`{name}" in guide, name
    assert '`"GSM-7"`' in guide and '`"UCS-2"`' in guide

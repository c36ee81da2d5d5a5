"""A third-party provider: written here, pip-installed offline, then used by gunicorn."""

import json
import subprocess
import sys
import textwrap

import pytest
from support.payloads import message
from support.service import Service

pytestmark = pytest.mark.e2e

SETUP_CFG = """
[metadata]
name = sms-service-pigeon
version = 1.2.3

[options]
py_modules = sms_pigeon
install_requires = sms-service

[options.entry_points]
sms_service.providers =
    pigeon = sms_pigeon:PigeonProvider
"""

MODULE = '''
"""A provider that files each message in a JSON-lines outbox."""

import datetime as dt
import json
import threading
import uuid

from sms_service.provider import ConfigError, Provider, Receipt


class PigeonProvider(Provider):
    def __init__(self, env, *, timeout):
        super().__init__(env, timeout=timeout)
        self.outbox = env.get("PIGEON_OUTBOX")
        if not self.outbox:
            raise ConfigError("PIGEON_OUTBOX is required for the pigeon provider")
        self.lock = threading.Lock()

    def send(self, message):
        sid = "PG" + uuid.uuid4().hex
        with self.lock, open(self.outbox, "a") as out:
            out.write(json.dumps({"sid": sid, "to": message.receiver, "from": message.sender,
                                  "body": message.body, "segments": message.num_segments}) + "\\n")
        return Receipt(sid=sid, status="delivered-by-pigeon", date_event=dt.datetime.now(dt.UTC),
                       num_segments=message.num_segments)
'''


@pytest.fixture
def pigeon_installed(tmp_path):
    source = tmp_path / "pigeon"
    source.mkdir()
    (source / "setup.cfg").write_text(textwrap.dedent(SETUP_CFG))
    (source / "setup.py").write_text("from setuptools import setup\n\nsetup()\n")
    (source / "sms_pigeon.py").write_text(textwrap.dedent(MODULE))
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "install", "--quiet", "--no-index", "--no-build-isolation", "--no-deps", str(source)],
                   check=True, capture_output=True, timeout=300)
    try:
        yield
    finally:
        subprocess.run([*pip, "uninstall", "--yes", "--quiet", "sms-service-pigeon"], check=True,
                       capture_output=True, timeout=120)


def test_third_party_provider_sends(pigeon_installed, tmp_path):
    listing = subprocess.run([str(__import__("pathlib").Path(sys.executable).with_name("sms-service")), "providers"],
                             capture_output=True, text=True, check=True, timeout=60).stdout
    assert "pigeon" in listing and "sms-service-pigeon 1.2.3" in listing

    outbox = tmp_path / "outbox.jsonl"
    payload = message(body="Coo " * 50)
    with Service({"SERVICE_PROVIDER": "pigeon", "PIGEON_OUTBOX": str(outbox)}) as service:
        response = service.send(payload)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "delivered-by-pigeon" and body["sid"].startswith("PG")
    assert body["numSegments"] == "2"
    filed = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert filed == [{"sid": body["sid"], "to": payload["receiver"], "from": payload["sender"],
                      "body": payload["body"], "segments": 2}]


def test_third_party_provider_config_error_names_its_variable(pigeon_installed):
    service = Service({"SERVICE_PROVIDER": "pigeon"})
    with pytest.raises(RuntimeError):
        service.start(timeout=15)
    assert "PIGEON_OUTBOX is required" in service.log_text()


def test_third_party_provider_without_status_support_is_unchanged_with_callbacks_on(pigeon_installed, tmp_path):
    """PUBLIC_BASE_URL on: the plugin is built as before, sends, and its messages still get a record."""
    import requests

    outbox = tmp_path / "outbox.jsonl"
    # No CALLBACK_SECRET either: a plugin without callbacks needs none.
    service = Service({"SERVICE_PROVIDER": "pigeon", "PIGEON_OUTBOX": str(outbox)})
    service.env["PUBLIC_BASE_URL"] = service.url
    with service:
        response = service.send(message())
        assert response.status_code == 200, response.text
        sid = response.json()["sid"]
        record = requests.get(f"{service.url}/messages/{sid}", timeout=10)
        callback = requests.post(f"{service.url}/callbacks/pigeon/status", json={"sid": sid}, timeout=10)
    assert record.status_code == 200
    assert (record.json()["status"], record.json()["providerStatus"]) == ("queued", "delivered-by-pigeon")
    assert callback.status_code == 404  # no status support: no callbacks

"""Run the real service under gunicorn on a loopback port, as an operator would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")

TWILIO_SID = "AC" + "1f" * 16
TWILIO_TOKEN = "tok3n" + "9" * 27
KALEYRA_SID = "HXAP1234567890KL"
KALEYRA_KEY = "Akey" + "7" * 28


def twilio_env(fake_url: str) -> dict[str, str]:
    return {"SERVICE_PROVIDER": "twilio", "TWILIO_ACCOUNT_SID": TWILIO_SID,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "TWILIO_BASE_URL": fake_url}


def kaleyra_env(fake_url: str) -> dict[str, str]:
    return {"SERVICE_PROVIDER": "kaleyra", "KALEYRA_SID": KALEYRA_SID,
            "KALEYRA_API_KEY": KALEYRA_KEY, "KALEYRA_BASE_URL": fake_url}


class Service:
    """One gunicorn master with its workers; its stdout is kept for the log tests."""

    def __init__(self, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="sms-service-", suffix=".log")[1])
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "HTTP_BIND_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(prefix="sms-metrics-"),
            **env,
        }
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> Service:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                if requests.get(f"{self.url}/-/healthz", timeout=0.5).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"gunicorn did not come up:\n{self.log_text()}")

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def send(self, payload: dict, **kwargs) -> requests.Response:
        return requests.post(f"{self.url}/send", json=payload, timeout=kwargs.pop("timeout", 30), **kwargs)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict]:
        return [json.loads(line) for line in self.log_text().splitlines() if line.strip()]

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

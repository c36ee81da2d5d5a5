"""Run the real service under gunicorn on a loopback port, as an operator would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import requests

from support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
# How an operator runs it from the source tree, and from anywhere once installed.
GUNICORN_COMMAND = (str(GUNICORN), "-c", "gunicorn.conf.py", "wsgi:app")
SERVE_COMMAND = (str(Path(sys.executable).with_name("sms-service")), "serve")

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
    """One gunicorn master with its workers; its stdout is kept for the log tests.

    `command` runs from `cwd` (the repository root by default); `workers` sets
    WEB_CONCURRENCY unless None. The environment is a user's, with nothing the README does
    not set: each Service has a fresh HOME (so its state is the default file under
    ~/.local/state, unless `env` names STATE_DIR or STORAGE_URI) and a fresh TMPDIR.
    """

    def __init__(self, env: dict[str, str], workers: int | None = 1, command: Sequence[str] = GUNICORN_COMMAND,
                 cwd: Path | str = ROOT, group: bool = False) -> None:
        self.port = free_port()
        # As a terminal does: the command in a process group of its own, signalled whole
        # (`make run` does not pass a signal sent to make alone on to the server).
        self.group = group
        self.log_path = Path(tempfile.mkstemp(prefix="sms-service-", suffix=".log")[1])
        self.command, self.cwd = list(command), cwd
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tempfile.mkdtemp(prefix="sms-home-"),
            "TMPDIR": tempfile.mkdtemp(prefix="sms-tmp-"),
            "LANG": "C.UTF-8",
            "HTTP_BIND_HOST": "127.0.0.1",
            "HTTP_PORT": str(self.port),
            **({} if workers is None else {"WEB_CONCURRENCY": str(workers)}),
            **env,
        }
        self.process: subprocess.Popen | None = None

    @property
    def state_dir(self) -> Path:
        """Where the service keeps its default SQLite file."""
        if self.env.get("STATE_DIR"):
            return Path(self.env["STATE_DIR"])
        return Path(self.env["HOME"]) / ".local" / "state" / "sms-service"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20) -> Service:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=self.group,
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

    def stop(self, timeout: float = 30, sig: int = signal.SIGTERM) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        if self.group:
            os.killpg(self.process.pid, sig)
        else:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout=timeout)
            deadline = time.monotonic() + timeout
            while self.group and time.monotonic() < deadline:  # make exits before its server
                try:
                    os.killpg(self.process.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                if self.group:
                    raise subprocess.TimeoutExpired(self.command, timeout)
            return code
        except subprocess.TimeoutExpired:
            if self.group:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.kill()
            return self.process.wait()

    def send(self, payload: dict, **kwargs) -> requests.Response:
        return requests.post(f"{self.url}/send", json=payload, timeout=kwargs.pop("timeout", 30), **kwargs)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict]:
        return [json.loads(line) for line in self.log_text().splitlines() if line.strip()]

    def worker_pids(self) -> list[int]:
        """The pids of the workers gunicorn booted so far, in order, from its log."""
        marker = "Booting worker with pid: "
        return [int(line.split(marker)[1].split('"')[0]) for line in self.log_text().splitlines()
                if marker in line]

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

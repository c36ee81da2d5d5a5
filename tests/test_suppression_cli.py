"""`sms-service suppressions import|export`: CSV round trips through the real console script."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from sms_service.storage import open_storage

SCRIPT = Path(sys.executable).with_name("sms-service")


def run(*args, env, stdin=None):
    # No SERVICE_PROVIDER: the data commands need the storage alone.
    base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run([str(SCRIPT), "suppressions", *args], capture_output=True, text=True, input=stdin,
                          env={**base, **env}, timeout=60)


@pytest.fixture(params=["sqlite", "redis"])
def env(request, tmp_path):
    if request.param == "sqlite":
        return {"STORAGE_URI": f"sqlite:///{tmp_path}/state.db"}
    return {"STORAGE_URI": request.getfixturevalue("redis_uri")}


def test_import_then_export_round_trips(env, tmp_path):
    source = tmp_path / "in.csv"
    source.write_text("Number,Source,Since\n+15558675310,inbound,2020-01-01\n+447700900123,,\n"
                      "+919876543210,provider,\n+15558675310,admin,\n", encoding="utf-8")
    imported = run("import", str(source), env=env)
    assert imported.returncode == 0, imported.stderr
    assert "imported 3 numbers (1 already on the list)" in imported.stderr
    exported = run("export", env=env)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [(r["number"], r["source"]) for r in rows] == [
        ("+15558675310", "inbound"), ("+447700900123", "admin"), ("+919876543210", "provider")]
    assert all(r["since"].endswith("Z") for r in rows)
    # The export imports back into another store unchanged (numbers and sources).
    other = {"STORAGE_URI": f"sqlite:///{tmp_path}/other.db"}
    out = tmp_path / "out.csv"
    assert run("export", str(out), env=env).returncode == 0
    assert run("import", env=other, stdin=out.read_text()).returncode == 0
    again = list(csv.DictReader(io.StringIO(run("export", "-", env=other).stdout)))
    assert [(r["number"], r["source"]) for r in again] == [(r["number"], r["source"]) for r in rows]


def test_bad_rows_are_named_by_line_without_the_number(tmp_path):
    env = {"STORAGE_URI": f"sqlite:///{tmp_path}/state.db"}
    result = run("import", env=env, stdin="number\n+15558675310\n0044 7700 900123\n+1555ABC\n")
    assert result.returncode == 1
    assert "2 rows skipped, not an E.164 number: lines 3, 4" in result.stderr
    assert "7700" not in result.stderr and "ABC" not in result.stderr
    storage = open_storage(env["STORAGE_URI"])
    assert storage.suppression_get("+15558675310")[0] == "admin"
    storage.close()


def test_a_file_without_a_number_column_and_memory_storage_are_refused(tmp_path):
    env = {"STORAGE_URI": f"sqlite:///{tmp_path}/state.db"}
    assert run("import", env=env, stdin="phone\n+15558675310\n").returncode == 1
    memory = run("export", env={"STORAGE_URI": "memory://"})
    assert memory.returncode == 1 and "memory://" in memory.stderr


def test_the_storage_alone_is_needed_even_beside_a_broken_provider_configuration(tmp_path):
    home = {"HOME": str(tmp_path)}  # the default state file, as `sms-service serve` would use it
    assert run("import", env=home, stdin="number\n+15558675310\n").returncode == 0
    # A provider named without its credentials stops the service, not the data commands.
    exported = run("export", env={**home, "SERVICE_PROVIDER": "twilio", "API_KEYS": "short"})
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.splitlines()[1].startswith("+15558675310,admin,")
    assert (tmp_path / ".local" / "state" / "sms-service" / "sms-service.db").exists()


def test_a_storage_that_cannot_be_used_is_named(tmp_path):
    result = run("export", env={"STATE_DIR": "/proc/x"})
    assert result.returncode == 1
    assert result.stderr.startswith("configuration error: STATE_DIR cannot hold the state file /proc/x/")

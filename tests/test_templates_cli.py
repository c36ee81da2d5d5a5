"""`sms-service templates export|import`: JSON lines round trips through the real console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sms_service.storage import open_storage
from sms_service.templates.service import canonical

SCRIPT = Path(sys.executable).with_name("sms-service")


def run(*args, env, stdin=None):
    # No SERVICE_PROVIDER: the data commands need the storage only.
    base = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run([str(SCRIPT), "templates", *args], capture_output=True, text=True, input=stdin,
                          env={**base, **env}, timeout=60)


@pytest.fixture(params=["sqlite", "redis"])
def env(request, tmp_path):
    if request.param == "sqlite":
        return {"STORAGE_URI": f"sqlite:///{tmp_path}/state.db"}
    return {"STORAGE_URI": request.getfixturevalue("redis_uri")}


def test_export_then_import_into_another_store_keeps_numbers_times_and_archive(env, tmp_path):
    storage = open_storage(env["STORAGE_URI"])
    storage.template_put("otp", canonical("Code ((code))", None, {}))
    storage.template_put("otp", canonical("Your code ((code))", "v2", {"kaleyra": {"template_id": "1107"}}))
    storage.template_put("old", canonical("bye", None, {}))
    storage.template_archive("old")
    storage.close()
    out = tmp_path / "templates.jsonl"
    exported = run("export", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    assert "exported 2 templates" in exported.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(t["name"], t["archived"], [v["version"] for v in t["versions"]]) for t in lines] == [
        ("old", True, [1]), ("otp", False, [1, 2])]
    assert lines[1]["versions"][1] == {"version": 2, "body": "Your code ((code))", "description": "v2",
                                       "providerIds": {"kaleyra": {"template_id": "1107"}},
                                       "createdAt": lines[1]["versions"][1]["createdAt"]}
    other = {"STORAGE_URI": f"sqlite:///{tmp_path}/other.db"}
    imported = run("import", env=other, stdin=out.read_text())
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 templates (0 already there" in imported.stderr
    again = run("export", "-", env=other)
    assert again.stdout.splitlines() == out.read_text().splitlines()  # identical, times included
    # A second import keeps what is there.
    twice = run("import", str(out), env=other)
    assert twice.returncode == 0 and "imported 0 templates (2 already there" in twice.stderr


def test_bad_lines_are_named_and_the_good_ones_imported(tmp_path):
    env = {"STORAGE_URI": f"sqlite:///{tmp_path}/state.db"}
    good = {"name": "ok", "versions": [{"version": 3, "body": "hi ((name))"}]}
    text = "\n".join([
        json.dumps(good),
        "not json",
        json.dumps({"name": "Bad Name", "versions": [{"version": 1, "body": "x"}]}),
        json.dumps({"name": "unbalanced", "versions": [{"version": 1, "body": "hi ((name"}]}),
        json.dumps({"name": "twice", "versions": [{"version": 1, "body": "a"}, {"version": 1, "body": "b"}]}),
    ]) + "\n"
    result = run("import", env=env, stdin=text)
    assert result.returncode == 1
    assert "imported 1 templates" in result.stderr
    assert "line 2 skipped: not a JSON object" in result.stderr
    assert "line 3 skipped: name: not a template name" in result.stderr
    assert "line 4 skipped: versions[0].body: the placeholder opened at character 4 is not closed" in result.stderr
    assert "line 5 skipped: versions[1].version: 1 given twice" in result.stderr
    storage = open_storage(env["STORAGE_URI"])
    assert storage.template_version("ok", None)[0] == 3  # its own number, kept
    assert storage.template_put("ok", canonical("hi ((name))", None, {})) == (3, False)


def test_memory_storage_is_refused(tmp_path):
    result = run("export", env={"STORAGE_URI": "memory://"})
    assert result.returncode == 1 and "memory://" in result.stderr
    bad = run("export", env={"STORAGE_URI": "ftp://x"})
    assert bad.returncode == 1 and "configuration error: STORAGE_URI" in bad.stderr

"""`sms-service templates export|import FILE`: every template and all its versions as JSON lines.

One line per template: ``{"name", "archived", "versions": [{"version", "body",
"description", "providerIds", "createdAt"}, ...]}``. An import recreates each template
with its own version numbers and times, only under a name the storage does not have yet
(a template already there is kept as it is, and counted). Needs STORAGE_URI alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from sms_service.data_commands import transfer
from sms_service.storage import Storage
from sms_service.suppression.service import iso_time
from sms_service.templates.service import MAX_VERSION, check_content, valid_name

MAX_BAD_LINES_SHOWN = 20


def export_jsonl(storage: Storage, out: TextIO) -> int:
    """Write every template, by name, as one JSON line each; returns the count.

    Raises `StorageUnavailable`.
    """
    count = 0
    for name in sorted(set(storage.guarded(storage.template_names))):
        found = storage.guarded(lambda name=name: storage.template_versions(name))
        if not found:
            continue  # a dangling name in the index: no template behind it
        archived, versions = found
        line = {"name": name, "archived": archived, "versions": [
            {"version": number, **json.loads(content), "createdAt": iso_time(created)}
            for number, content, created in versions]}
        out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


def import_jsonl(storage: Storage, lines: Iterable[str]) -> tuple[int, int, list[tuple[int, str]]]:
    """Restore the templates of JSON lines; returns (restored, already there, [(line number, reason)]).

    Raises `StorageUnavailable`.
    """
    restored = kept = 0
    bad: list[tuple[int, str]] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            name, archived, versions = _template(text)
        except ValueError as exc:
            bad.append((number, str(exc)))
            continue
        if storage.guarded(lambda name=name, versions=versions, archived=archived:
                           storage.template_restore(name, versions, archived)):
            restored += 1
        else:
            kept += 1
    return restored, kept, bad


def _template(text: str) -> tuple[str, bool, list[tuple[int, str, int]]]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("not a JSON object") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    name = data.get("name")
    if not isinstance(name, str) or not valid_name(name):
        raise ValueError("name: not a template name")
    archived = data.get("archived", False)
    versions = data.get("versions")
    if not isinstance(archived, bool) or not isinstance(versions, list) or not versions:
        raise ValueError("archived must be true or false, versions a non-empty list")
    result: dict[int, tuple[int, str, int]] = {}
    for index, version in enumerate(versions):
        where = f"versions[{index}]"
        if not isinstance(version, dict):
            raise ValueError(f"{where}: not an object")
        number = version.get("version")
        if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= MAX_VERSION:
            raise ValueError(f"{where}.version: not a whole number from 1")
        if number in result:
            raise ValueError(f"{where}.version: {number} given twice")
        try:
            content = check_content(version.get("body"), version.get("description"),
                                    version.get("providerIds"))
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from None
        result[number] = (number, content, _millis(version.get("createdAt"), where))
    return name, archived, sorted(result.values())


def _millis(text: Any, where: str) -> int:
    if text is None:
        return int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    try:
        when = dt.datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        when = None
    if when is None:
        raise ValueError(f"{where}.createdAt: not an ISO 8601 time")
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1000)


def run(args: argparse.Namespace) -> int:
    """The command: export or import against STORAGE_URI; returns the exit status."""
    status, imported = transfer("templates", args, export_jsonl, import_jsonl, "templates")
    if imported is None:
        return status
    restored, kept, bad = imported
    print(f"imported {restored} templates ({kept} already there, kept as they are)", file=sys.stderr)
    for number, reason in bad[:MAX_BAD_LINES_SHOWN]:
        print(f"line {number} skipped: {reason}", file=sys.stderr)
    if len(bad) > MAX_BAD_LINES_SHOWN:
        print(f"... and {len(bad) - MAX_BAD_LINES_SHOWN} more lines skipped", file=sys.stderr)
    return 1 if bad else 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``templates export|import [FILE]`` to the `sms-service` command."""
    parser = commands.add_parser(
        "templates", help="export or import the message templates as JSON lines",
        description="Export every template of STORAGE_URI, with all its versions, as JSON lines (one "
        "template a line), or import such a file: each template is recreated with its version numbers, "
        "unless one of that name exists already. Needs STORAGE_URI only. FILE '-' or none: standard input "
        "or output.",
    )
    parser.add_argument("action", choices=("export", "import"))
    parser.add_argument("file", nargs="?", help="the JSON lines file (default: stdin/stdout)")
    parser.set_defaults(run=run)

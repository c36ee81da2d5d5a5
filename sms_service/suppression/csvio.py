"""`sms-service suppressions import|export`: the list as CSV, for operators and auditors.

The file holds full numbers (it is the audit record the list exists for); nothing this
command prints or logs does: a bad row is named by its line number only.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable
from typing import TextIO

from sms_service import phone
from sms_service.data_commands import transfer
from sms_service.storage import Storage
from sms_service.suppression.service import ADMIN, SOURCES, SuppressionList, iso_time

COLUMNS = ("number", "source", "since")
MAX_BAD_LINES_SHOWN = 20


def export_csv(storage: Storage, out: TextIO) -> int:
    """Write every entry as ``number,source,since`` (since: ISO 8601 UTC); returns the count."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    entries = storage.guarded(storage.suppression_all)
    for number, source, since in entries:
        writer.writerow((number, source, iso_time(since)))
    return len(entries)


def import_csv(storage: Storage, rows: Iterable[str]) -> tuple[int, int, list[int]]:
    """Add the numbers of a CSV with a ``number`` column (``source`` optional, else admin).

    A number already on the list keeps its entry; entries added now start now (``since`` in
    the file is not taken: the list records when this service learnt of the opt-out).
    Returns (added, already there, the line numbers of rows without a usable number).
    Raises `ValueError` when there is no ``number`` column, and `StorageUnavailable`.
    """
    reader = csv.DictReader(rows)
    if not reader.fieldnames or "number" not in [name.strip().lower() for name in reader.fieldnames]:
        raise ValueError("the first line must name the columns, including number")
    reader.fieldnames = [name.strip().lower() for name in reader.fieldnames]
    suppression = SuppressionList(storage)
    added = kept = 0
    bad: list[int] = []
    for row in reader:
        number = (row.get("number") or "").strip()
        if not phone.is_e164(number) or not phone.is_possible(number):
            bad.append(reader.line_num)
            continue
        source = (row.get("source") or "").strip().lower()
        if suppression.add(number, source if source in SOURCES else ADMIN):
            added += 1
        else:
            kept += 1
    return added, kept, bad


def run(args: argparse.Namespace) -> int:
    """The command: import or export against STORAGE_URI (nothing else is read); returns the exit status."""
    status, imported = transfer("suppressions", args, export_csv, import_csv, "numbers", newline="",
                                errors=(ValueError, csv.Error))
    if imported is None:
        return status
    added, kept, bad = imported
    print(f"imported {added} numbers ({kept} already on the list)", file=sys.stderr)
    if bad:
        lines = ", ".join(map(str, bad[:MAX_BAD_LINES_SHOWN]))
        lines += " ..." if len(bad) > MAX_BAD_LINES_SHOWN else ""
        print(f"{len(bad)} rows skipped, not an E.164 number: lines {lines}", file=sys.stderr)
        return 1
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``suppressions import|export [FILE]`` to the `sms-service` command."""
    parser = commands.add_parser(
        "suppressions", help="import or export the opt-out suppression list as CSV",
        description="Export the suppression list of STORAGE_URI as CSV (number,source,since), or import "
        "numbers from a CSV with a number column (source optional: inbound, provider or admin, "
        "default admin). FILE '-' or none: standard input or output.",
    )
    parser.add_argument("action", choices=("import", "export"))
    parser.add_argument("file", nargs="?", help="the CSV file (default: stdin/stdout)")
    parser.set_defaults(run=run)

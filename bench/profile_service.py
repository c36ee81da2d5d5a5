"""Where a worker's time goes under load: py-spy samples of the thread holding the GIL.

    .venv/bin/pip install py-spy          # the profiler is not a bench requirement
    .venv/bin/python bench/profile_service.py --latency-ms 0 --seconds 15

Starts a fake provider and the service (default config, as bench/run.py does), drives
`POST /send` with wrk, records the first worker with ``py-spy record --gil`` (only
samples where a thread holds the GIL: the worker's Python CPU, which is what a
GIL-bound worker runs out of), and prints the hottest functions, self and inclusive,
and the hottest modules. The raw collapsed stacks go to bench/results/logs/, ready for
flamegraph.pl or speedscope.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run

_LINE = re.compile(r":\d+\)$")


def aggregate(raw: Path, top: int) -> str:
    """Self and inclusive sample shares per function, and inclusive share per file."""
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    by_file: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
        for name in {frame.rpartition(" (")[2].rstrip(")") for frame in frames}:
            by_file[name] += n
    if not total:
        return "no samples"
    out = [f"{total} samples with the GIL held"]
    for title, counter in (("self", self_time), ("inclusive", inclusive), ("inclusive, by file", by_file)):
        out.append(f"\n## {title}")
        for name, n in counter.most_common(top):
            out.append(f"{100 * n / total:5.1f}%  {name}")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=15, help="seconds sampled")
    parser.add_argument("--rate", type=int, default=100, help="samples per second")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--app", default="wsgi:app", help="wsgi:app (service) or naive_relay:app")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not spy:
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    run.LOGS.mkdir(parents=True, exist_ok=True)
    raw = run.LOGS / f"profile-{args.app.split(':')[0]}-{args.latency_ms}ms.txt"
    stack = run.Stack(run.LOGS)
    tmp = Path(tempfile.mkdtemp(prefix="sms-profile-"))
    try:
        provider = run.FakeProvider(stack, args.latency_ms)
        extra = dict(item.split("=", 1) for item in args.env)
        service = run.Gunicorn(stack, "profile-target", provider, app=args.app, extra_env=extra, tmp=tmp)
        worker = service.worker_pids()[0]
        wrk = subprocess.Popen(
            ["wrk", "-t1", f"-c{args.connections}", f"-d{args.seconds + 5}s",
             "-s", str(run.BENCH / "send.lua"), service.url + "/send", "--", "0", "1"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(3)
        subprocess.run([spy, "record", "--gil", "--nonblocking", "-p", str(worker), "-d", str(args.seconds),
                        "-r", str(args.rate), "--format", "raw", "-o", str(raw)],
                       check=True, capture_output=True)
        output = wrk.communicate(timeout=args.seconds + 60)[0]
        summary = next((line for line in output.splitlines() if line.startswith("Requests/sec")), "")
        print(f"{args.app}, provider {args.latency_ms} ms, {args.connections} conns: {summary.strip()}")
    finally:
        stack.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    print(aggregate(raw, args.top))
    print(f"\nraw stacks: {raw.relative_to(run.ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

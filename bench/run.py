"""Benchmark: how close the service comes to the limit its provider's latency sets.

    .venv/bin/pip install -r bench/requirements.txt
    .venv/bin/python bench/run.py            # about 8 minutes; `make bench` does both

Starts everything on 127.0.0.1 (fake providers, redis-server, gunicorn instances), drives
`POST /send` with wrk and bench/send.lua, stops everything, writes
bench/results/<YYYY-MM-DD>.json and prints a markdown table of each figure against its
target. Scenarios, each measured side by side with its baseline in the same run:

1. provider latency 100 ms, 64 connections, zero configuration (`sms-service serve`: one
   worker per CPU on the embedded SQLite store): service throughput / throughput of wrk
   against the fake provider directly; the last wave's default (1 worker, memory://)
   beside it for context;
2. the same with STORAGE_URI=redis:// and several workers;
3. provider latency 0: service req/s / req/s of a naive relay (bench/naive_relay.py)
   under the same gunicorn settings and worker count, and the CPU time per request of each;
4. 16 connections, provider latency 50 ms: service p50 and p99 minus the provider's;
5. resident memory per worker, idle and after the load;
6. the cost of segment budgets: scenario 1 (and, for the CPU cost, provider latency 0) with
   a SEGMENT_BUDGETS so large that nothing is refused, against the same without, one
   after the other in the same run;
7. the cost of failover when nothing fails: SERVICE_PROVIDER=twilio,kaleyra (the primary
   healthy, so each send reads one circuit) against twilio alone, provider latency 0 and
   100 ms, one after the other in the same run.

This is a benchmark, not a test: it asserts nothing and always exits 0 once it has
measured (non-zero only when it could not run).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LOGS = RESULTS / "logs"
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"  # every process of the bench listens here, and wrk only targets here

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "bench-token-0123456789abcdef0123"  # 32 printable characters
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
# The rate limit stays on, at a height no run reaches.
RATE_LIMIT_OUT_OF_THE_WAY = "1000000000"
# send.lua has 200,000 receivers: a warm-up takes them from 0, the measured run from here.
MEASURE_OFFSET = 100_000
RECEIVERS = 200_000

# Issue 24's targets (the third wave), met by the median of the rounds.
TARGETS = {
    "s1_ratio": 0.97,
    "s2_ratio": 0.95,
    # CPU per request against the naive relay's, at 0 ms (at most this many times it).
    "s3_cpu_ratio": 1.2,
    "s4_p50_ms": 2.0,
    "s4_p99_ms": 8.0,
    "rss_mb": 80.0,
    "provider_headroom": 10.0,
    "s6_ratio": 0.95,
    "s7_ratio_0ms": 0.95,
}

# Scenario 6: every send spends from a budget (send.lua's receivers are all US numbers),
# and none is ever refused nor warned about.
BUDGETS_OUT_OF_THE_WAY = "US=1000000000/1d,*=1000000000/1d"

# Scenario 7: a secondary provider that is configured but never called (the primary never
# fails): the cost measured is the primary's circuit read on every send.
FAILOVER_SECONDARY = {
    "SERVICE_PROVIDER": "twilio,kaleyra",
    "KALEYRA_SID": "HXAP1234567890KL", "KALEYRA_API_KEY": "bench-kaleyra-key-0123456789abcdef",
    "KALEYRA_BASE_URL": "http://127.0.0.1:9",  # never reached while the primary answers
}

# Foreign load (CPU used by processes the bench did not start), in % of one core, above
# which the table says the machine was not quiet.
FOREIGN_LOAD_WARNING = 15.0

# Only these reach a child: the service sees its defaults unless the bench sets a value.
_PASS_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT")

# urllib must never go through a proxy from the environment: loopback only.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(RuntimeError):
    """The bench could not run (a process did not start, a tool is missing)."""


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


class Stack:
    """Every process the bench started; `stop_all` ends them (by pid) in reverse order."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: list[tuple[str, subprocess.Popen, Any]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # closed in stop()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
        self.procs.append((name, proc, log))
        return proc

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, proc: subprocess.Popen) -> None:
        for entry in list(self.procs):
            if entry[1] is proc:
                _terminate(proc)
                entry[2].close()
                self.procs.remove(entry)

    def stop_all(self) -> None:
        for _, proc, log in reversed(self.procs):
            _terminate(proc)
            log.close()
        self.procs.clear()


def _terminate(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM, then SIGKILL to the process and whatever children it still has."""
    if proc.poll() is not None:
        return
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.is_running():
                child.kill()


def wait_http(stack: Stack, name: str, proc: subprocess.Popen, url: str, timeout: float = 30.0) -> None:
    """Wait until `url` answers anything at all over HTTP."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode}:\n{stack.log_tail(name)}")
        try:
            with _HTTP.open(url, timeout=2) as answer:
                answer.read()
            return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise BenchError(f"{name} did not answer {url} within {timeout:g} s:\n{stack.log_tail(name)}")


def http_json(url: str) -> Any:
    with _HTTP.open(url, timeout=5) as answer:
        return json.loads(answer.read())


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _PASS_ENV}
    env.setdefault("LANG", "C.UTF-8")
    env.update(extra)
    return env


class FakeProvider:
    def __init__(self, stack: Stack, latency_ms: int) -> None:
        self.latency_ms = latency_ms
        self.port = free_port()
        self.name = f"fake-provider-{latency_ms}ms"
        self.base = f"http://{LOOPBACK}:{self.port}"
        self.proc = stack.start(self.name, [
            PYTHON, str(BENCH / "fake_provider.py"), "--host", LOOPBACK,
            "--port", str(self.port), "--latency-ms", str(latency_ms),
        ], child_env({}))
        wait_http(stack, self.name, self.proc, f"{self.base}/-/stats")

    def sends(self) -> int:
        return int(http_json(f"{self.base}/-/stats")["sends"])


class Gunicorn:
    """One service instance under `sms-service serve`, or the naive relay under gunicorn.conf.py.

    Both run the service's packaged gunicorn settings; `workers` None leaves their default
    (the CPUs, or 1 on memory://), and each instance keeps its state in its own STATE_DIR.
    """

    def __init__(self, stack: Stack, name: str, provider: FakeProvider, *, app: str = "wsgi:app",
                 workers: int | None = None, storage_uri: str | None = None,
                 extra_env: dict[str, str] | None = None, tmp: Path) -> None:
        self.stack = stack
        self.name = name
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        metrics_dir = tmp / f"metrics-{name}"
        metrics_dir.mkdir()
        env = {
            "SERVICE_PROVIDER": "twilio",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_BASE_URL": provider.base,
            "RATE_LIMIT_MAX_REQUESTS": RATE_LIMIT_OUT_OF_THE_WAY,
            "HTTP_BIND_HOST": LOOPBACK,
            "HTTP_PORT": str(self.port),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "STATE_DIR": str(tmp / f"state-{name}"),
            "NAIVE_RELAY_TARGET": provider.base + MESSAGES_PATH,
        }
        if workers:
            env["WEB_CONCURRENCY"] = str(workers)
        if storage_uri:
            env["STORAGE_URI"] = storage_uri
        env.update(extra_env or {})
        self.env = {k: v for k, v in env.items() if k not in ("TWILIO_AUTH_TOKEN", "STATE_DIR")}
        default = 1 if env.get("STORAGE_URI", "").startswith("memory://") else len(os.sched_getaffinity(0))
        self.workers = int(env.get("WEB_CONCURRENCY") or default)
        if app == "wsgi:app":
            argv = [str(Path(PYTHON).with_name("sms-service")), "serve"]
        else:
            argv = [PYTHON, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
                    "--pythonpath", str(BENCH), app]
        self.proc = stack.start(name, argv, child_env(env))
        wait_http(stack, name, self.proc, f"{self.url}/-/healthz")
        self._wait_workers()

    def _wait_workers(self, timeout: float = 30.0) -> None:
        # /-/healthz answers once one worker is up; the others may still be importing.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.worker_pids()) >= self.workers:
                time.sleep(1.5)  # let the last one finish create_app()
                return
            time.sleep(0.1)
        raise BenchError(f"{self.name}: {self.workers} workers did not start:\n"
                         f"{self.stack.log_tail(self.name)}")

    def worker_pids(self) -> list[int]:
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def pids(self) -> list[int]:
        return [self.proc.pid, *self.worker_pids()]

    def connections(self) -> dict[int, int]:
        """Established client connections held by each worker."""
        held = {}
        for pid in self.worker_pids():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                sockets = psutil.Process(pid).net_connections(kind="tcp")
                held[pid] = sum(1 for c in sockets if c.status == psutil.CONN_ESTABLISHED
                                and c.laddr and c.laddr.port == self.port)
        return held

    def rss_mb(self) -> list[float]:
        sizes = []
        for pid in self.worker_pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                sizes.append(round(psutil.Process(pid).memory_info().rss / 2**20, 1))
        return sizes

    def stop(self) -> None:
        self.stack.stop(self.proc)


class Redis:
    def __init__(self, stack: Stack, tmp: Path) -> None:
        self.port = free_port()
        self.uri = f"redis://{LOOPBACK}:{self.port}/0"
        server = shutil.which("redis-server")
        if not server:
            raise BenchError("redis-server is not installed (apt-get install redis-server)")
        self.proc = stack.start("redis", [
            server, "--bind", LOOPBACK, "--port", str(self.port), "--save", "",
            "--appendonly", "no", "--dir", str(tmp), "--protected-mode", "yes",
        ], child_env({}))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"redis-server exited:\n{stack.log_tail('redis')}")
            try:
                with socket.create_connection((LOOPBACK, self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise BenchError("redis-server did not answer PING")


# --------------------------------------------------------------------------- measuring


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def own_cpu_seconds() -> float:
    """CPU time of this bench and every process it started that is still running."""
    me = psutil.Process()
    return cpu_seconds([me.pid, *(child.pid for child in me.children(recursive=True))])


def _busy_seconds(before: Any, after: Any) -> tuple[float, float]:
    """(busy CPU seconds over all cores, elapsed CPU seconds over all cores)."""
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0) - getattr(before, "iowait", 0))
    total = sum(after) - sum(before)
    return total - idle, total


class Wrk:
    def __init__(self, threads: int, duration: int, warmup: int, rounds: int = 3) -> None:
        binary = shutil.which("wrk")
        if not binary:
            raise BenchError("wrk is not installed (apt-get install wrk)")
        self.binary = binary
        self.threads = threads
        self.duration = duration
        self.warmup = warmup
        self.rounds = rounds

    def _run(self, url: str, connections: int, seconds: int, offset: int) -> dict[str, Any]:
        threads = min(self.threads, connections)
        argv = [self.binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                "-s", str(BENCH / "send.lua"), url, "--", str(offset), str(threads)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
        for line in done.stdout.splitlines():
            if line.startswith("BENCH_JSON "):
                return json.loads(line.removeprefix("BENCH_JSON "))
        raise BenchError(f"wrk printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")

    def measure(self, label: str, url: str, connections: int, **options: Any) -> dict[str, Any]:
        """Warm up, then measure `rounds` times: the median of each figure, its spread, and every round.

        The figures of the answer are the rounds' medians (each on its own); `spread`
        gives each one's min and max, `rounds` every round as `measure_once` gave it.
        """
        rounds = [self.measure_once(label, url, connections, warm_up=i == 0, **options)
                  for i in range(self.rounds)]
        return summarize(rounds)

    def measure_once(self, label: str, url: str, connections: int, *, warm_up: bool = True,
                     cpu_of: list[int] | None = None, instance: Gunicorn | None = None,
                     provider: FakeProvider | None = None) -> dict[str, Any]:
        """Warm up (with `warm_up`), then measure once.

        Records the CPU time of `cpu_of` (or of the gunicorn `instance`: master and
        workers, and each worker's share and connections half-way through) and the
        sends `provider` saw.
        """
        assert url.startswith(f"http://{LOOPBACK}:")
        if instance:
            cpu_of = instance.pids()
        if self.warmup and warm_up:
            self._run(url, connections, self.warmup, 0)
        workers = instance.worker_pids() if instance else []
        connections_seen: dict[int, int] = {}
        sampler = threading.Timer(self.duration / 2,
                                  lambda: connections_seen.update(instance.connections() if instance else {}))
        sends_before = provider.sends() if provider else 0
        cpu_before = cpu_seconds(cpu_of or [])
        worker_before = {pid: cpu_seconds([pid]) for pid in workers}
        machine_before = psutil.cpu_times()
        own_before = own_cpu_seconds()
        wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        sampler.start()
        result = self._run(url, connections, self.duration, MEASURE_OFFSET)
        sampler.join()
        wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        own_after = own_cpu_seconds()
        machine_after = psutil.cpu_times()
        cpu_after = cpu_seconds(cpu_of or [])
        worker_after = {pid: cpu_seconds([pid]) for pid in workers}
        seconds = result["duration_us"] / 1e6
        lat = result["latency_us"]
        busy, total = _busy_seconds(machine_before, machine_after)
        wrk_cpu = (wrk_after.ru_utime + wrk_after.ru_stime) - (wrk_before.ru_utime + wrk_before.ru_stime)
        own = own_after - own_before
        run = {
            "label": label,
            "url_path": urllib.parse.urlsplit(url).path,
            "connections": connections,
            "seconds": round(seconds, 2),
            "requests": result["requests"],
            "ok": result["ok"],
            "non_2xx": result["other"],
            "statuses": result["statuses"],
            "socket_errors": result["errors"],
            "ok_per_s": round(result["ok"] / seconds, 1),
            "latency_ms": {k: round(v / 1000, 2) for k, v in lat.items()},
            "machine_cpu_busy_pct": round(100 * busy / total, 1) if total > 0 else 0.0,
            "wrk_cpu_s": round(wrk_cpu, 2),
            # CPU that neither the bench nor anything it started used: another job on the
            # machine, which skews every figure of this run. In % of one core.
            "foreign_cpu_pct": round(100 * max(0.0, busy - own - wrk_cpu) / seconds, 1),
        }
        if cpu_of:
            cpu = cpu_after - cpu_before
            run["cpu_s"] = round(cpu, 2)
            run["cpu_ms_per_request"] = round(1000 * cpu / max(result["ok"], 1), 3)
        if workers:
            # A worker near 100% is bound by its GIL, whatever the machine has left.
            run["workers"] = [{"pid": pid,
                               "cpu_pct": round(100 * (worker_after[pid] - worker_before[pid]) / seconds, 1),
                               "connections_mid_run": connections_seen.get(pid)}
                              for pid in workers]
        if provider:
            run["provider_sends"] = provider.sends() - sends_before
        if result["requests"] > RECEIVERS - MEASURE_OFFSET:
            run["warning"] = "more requests than distinct receivers: some were repeated"
        per_worker = "".join(f", worker {w['cpu_pct']:.0f}% CPU/{w['connections_mid_run']} conns"
                             for w in run.get("workers", []))
        print(f"  {label}: {run['ok_per_s']} ok/s, p50 {run['latency_ms']['p50']} ms, "
              f"p99 {run['latency_ms']['p99']} ms, non-2xx {run['non_2xx']}, "
              f"machine {run['machine_cpu_busy_pct']}% busy, foreign load {run['foreign_cpu_pct']}% of a core"
              f"{per_worker}", flush=True)
        return run


SPREAD_FIGURES = ("ok_per_s", "cpu_ms_per_request", "p50", "p99", "foreign_cpu_pct")


def _figure(run: dict[str, Any], name: str) -> float | None:
    return run["latency_ms"].get(name) if name in ("p50", "p99") else run.get(name)


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One run of medians from `rounds`, with each figure's spread (min, max) and the rounds."""
    by_rps = sorted(rounds, key=lambda run: run["ok_per_s"])
    summary = {**by_rps[len(by_rps) // 2], "latency_ms": dict(by_rps[len(by_rps) // 2]["latency_ms"])}
    spread = {}
    for name in SPREAD_FIGURES:
        values = [v for v in (_figure(run, name) for run in rounds) if v is not None]
        if not values:
            continue
        middle = round(statistics.median(values), 3)
        if name in ("p50", "p99"):
            summary["latency_ms"][name] = middle
        else:
            summary[name] = middle
        spread[name] = [min(values), max(values)]
    summary["spread"] = spread
    summary["rounds"] = rounds
    if len(rounds) > 1:
        print(f"  {summary['label']}: median of {len(rounds)} rounds {summary['ok_per_s']} ok/s "
              f"({spread['ok_per_s'][0]}-{spread['ok_per_s'][1]})"
              + (f", CPU {summary['cpu_ms_per_request']} ms/req" if "cpu_ms_per_request" in summary else ""),
              flush=True)
    return summary


def round_trips(provider: FakeProvider, env: dict[str, str]) -> dict[str, Any]:
    """Storage commands per send under `env` (bench/round_trips.py), or the reason there are none."""
    argv = [PYTHON, str(BENCH / "round_trips.py"), "--provider-base", provider.base]
    for name, value in env.items():
        argv += ["--env", f"{name}={value}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise BenchError(f"round trips probe failed:\n{done.stdout}\n{done.stderr}")
    counted = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  storage round trips per send: {counted['per_send']} "
          f"({counted['before_provider']} before the provider call)", flush=True)
    return counted


def memory(instance: Gunicorn, when: str) -> dict[str, Any]:
    sizes = instance.rss_mb()
    return {"instance": instance.name, "when": when, "workers_rss_mb": sizes,
            "max_mb": max(sizes) if sizes else None}


# --------------------------------------------------------------------------- scenarios


def run_scenarios(args: argparse.Namespace, stack: Stack, tmp: Path) -> dict[str, Any]:
    wrk = Wrk(args.wrk_threads, args.duration, args.warmup, args.rounds)
    extra = dict(item.split("=", 1) for item in args.env)
    runs: dict[str, Any] = {}
    trips: dict[str, Any] = {}
    mem: list[dict[str, Any]] = []
    instances: dict[str, Any] = {}
    selected = set(args.scenarios)

    def start(name: str, provider: FakeProvider, **kwargs: Any) -> Gunicorn:
        print(f"- starting {name}", flush=True)
        own_env = kwargs.pop("extra_env", {})
        instance = Gunicorn(stack, name, provider, extra_env={**extra, **own_env}, tmp=tmp, **kwargs)
        instances[name] = {"workers": instance.workers, "env": instance.env}
        return instance

    providers = {latency: FakeProvider(stack, latency) for latency in (100, 0, 50)}
    if selected & {"1", "3", "4"}:
        print("- round trips of the zero configuration (sqlite)", flush=True)
        trips["sqlite"] = round_trips(providers[0], extra)

    if selected & {"1", "2"}:
        print("scenarios 1-2: provider latency 100 ms, 64 connections", flush=True)
        p100 = providers[100]
        runs["direct_100ms_64c"] = wrk.measure("direct, 100 ms, 64 conns", p100.base + "/direct", 64,
                                               cpu_of=[p100.proc.pid])
        if "1" in selected:
            svc = start("s1-default", p100)
            mem.append(memory(svc, "idle"))
            runs["s1_service"] = wrk.measure(f"service, zero config, {svc.workers} workers",
                                             svc.url + "/send", 64, instance=svc, provider=p100)
            mem.append(memory(svc, "after load"))
            svc.stop()
            # Context for the figure above: the first wave's default, one GIL-bound worker...
            old = start("s1-one-worker-memory", p100, workers=1, storage_uri="memory://")
            runs["s1_one_worker"] = wrk.measure("service, 1 worker, memory://", old.url + "/send", 64,
                                                instance=old, provider=p100)
            old.stop()
            # ... and what a relay with no guards, validation or metrics reaches under the
            # same gunicorn settings and worker count.
            naive = start("s1-naive-relay", p100, app="naive_relay:app")
            runs["s1_naive"] = wrk.measure(f"naive relay, 100 ms, {naive.workers} workers",
                                           naive.url + "/send", 64, instance=naive, provider=p100)
            naive.stop()
        if "2" in selected:
            redis = Redis(stack, tmp)
            trips["redis"] = round_trips(providers[0], {**extra, "STORAGE_URI": redis.uri})
            svc = start("s2-redis", p100, workers=args.redis_workers, storage_uri=redis.uri)
            mem.append(memory(svc, "idle"))
            runs["s2_service"] = wrk.measure(f"service, redis, {svc.workers} workers", svc.url + "/send",
                                             64, instance=svc, provider=p100)
            mem.append(memory(svc, "after load"))
            svc.stop()
            stack.stop(redis.proc)

    if "3" in selected:
        print("scenario 3: provider latency 0, 64 connections", flush=True)
        p0 = providers[0]
        naive = start("s3-naive-relay", p0, app="naive_relay:app")
        runs["s3_naive"] = wrk.measure("naive relay", naive.url + "/send", 64, instance=naive,
                                       provider=p0)
        naive.stop()
        svc = start("s3-service", p0)
        mem.append(memory(svc, "idle"))
        runs["s3_service"] = wrk.measure("service", svc.url + "/send", 64, instance=svc, provider=p0)
        mem.append(memory(svc, "after load"))
        svc.stop()
        runs["provider_capacity_0ms_64c"] = wrk.measure("fake provider alone, 0 ms", p0.base + "/direct",
                                                        64, cpu_of=[p0.proc.pid])

    if "4" in selected:
        print("scenario 4: provider latency 50 ms, 16 connections", flush=True)
        p50 = providers[50]
        runs["direct_50ms_16c"] = wrk.measure("direct, 50 ms, 16 conns", p50.base + "/direct", 16,
                                              cpu_of=[p50.proc.pid])
        svc = start("s4-service", p50)
        mem.append(memory(svc, "idle"))
        runs["s4_service"] = wrk.measure("service", svc.url + "/send", 16, instance=svc, provider=p50)
        mem.append(memory(svc, "after load"))
        svc.stop()
        # Context: what the twenty-line relay adds under the same conditions.
        naive = start("s4-naive-relay", p50, app="naive_relay:app")
        runs["s4_naive"] = wrk.measure("naive relay", naive.url + "/send", 16, instance=naive, provider=p50)
        naive.stop()

    def on_and_off(scenario: str, env: dict[str, str], on: tuple[str, str], off: tuple[str, str]) -> None:
        # The same service with and without `env`, one after the other, at 100 and 0 ms:
        # `on` and `off` are (run key suffix, label) of each.
        for (key, _), extra_env in ((off, {}), (on, env)):
            trips[f"s{scenario}_{key}"] = round_trips(providers[0], {**extra, **extra_env})
        for latency in (100, 0):
            provider = providers[latency]
            for (key, label), extra_env in ((off, {}), (on, env)):
                svc = start(f"s{scenario}-{latency}ms-{key}", provider, extra_env=extra_env)
                runs[f"s{scenario}_{latency}ms_{key}"] = wrk.measure(
                    f"service, {latency} ms, {label}", svc.url + "/send", 64, instance=svc, provider=provider)
                svc.stop()

    if "6" in selected:
        print("scenario 6: segment budgets on vs off, provider latency 100 ms and 0 ms, 64 connections",
              flush=True)
        on_and_off("6", {"SEGMENT_BUDGETS": BUDGETS_OUT_OF_THE_WAY}, ("budgets", "budgets on"),
                   ("off", "budgets off"))

    if "7" in selected:
        print("scenario 7: failover configured (primary healthy) vs one provider, 100 and 0 ms, 64 conns",
              flush=True)
        on_and_off("7", FAILOVER_SECONDARY, ("failover", "twilio,kaleyra"), ("one", "twilio"))

    return {"runs": runs, "memory": mem, "instances": instances, "round_trips": trips}


# --------------------------------------------------------------------------- report


def _verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "PASS" if ok else "MISS"


def evaluate(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per figure: what was measured, against what, and the verdict."""
    runs, rows = data["runs"], []

    def row(scenario: str, what: str, service: str, baseline: str, figure: float | None,
            shown: str, target: float | None, target_text: str, higher: bool = True) -> None:
        verdict = "info" if target is None else _verdict(figure, target, higher)
        rows.append({"scenario": scenario, "what": what, "service": service, "baseline": baseline,
                     "figure": figure, "figure_text": shown, "target": target,
                     "target_text": target_text, "result": verdict})

    spreads: dict[tuple[str, str], tuple[float, float]] = {}

    def ratio(key: str, base_key: str) -> float | None:
        # Round i against round i of the baseline: the median of those ratios, and their spread.
        if key not in runs or base_key not in runs:
            return None
        pairs = zip(runs[key].get("rounds", [runs[key]]), runs[base_key].get("rounds", [runs[base_key]]),
                    strict=False)
        ratios = [a["ok_per_s"] / b["ok_per_s"] for a, b in pairs if b["ok_per_s"]]
        if not ratios:
            return None
        spreads[key, base_key] = (min(ratios), max(ratios))
        return round(statistics.median(ratios), 3)

    def ratio_text(key: str, base_key: str, value: float | None, unit: str = "") -> str:
        if value is None:
            return "-"
        low, high = spreads.get((key, base_key), (value, value))
        digits = 1 if unit else 2
        return f"{value:.{digits}f}{unit} ({low:.{digits}f}-{high:.{digits}f})"

    def rps(key: str) -> str:
        return f"{runs[key]['ok_per_s']:.0f} req/s" if key in runs else "-"

    workers = data["instances"].get("s2-redis", {}).get("workers", "?")
    for num, key, base, what, baseline_name, target in (
        ("1", "s1_service", "direct_100ms_64c", "throughput vs provider direct: 100 ms, 64 conns, "
         f"zero config ({data['instances'].get('s1-default', {}).get('workers', '?')} workers, sqlite)",
         "direct", TARGETS["s1_ratio"]),
        ("2", "s2_service", "direct_100ms_64c", f"same, STORAGE_URI=redis://, {workers} workers",
         "direct", TARGETS["s2_ratio"]),
        ("3", "s3_service", "s3_naive", "throughput vs naive relay: provider 0 ms, 64 conns",
         "naive relay", None),
    ):
        if key in runs:
            value = ratio(key, base)
            row(num, what, rps(key), f"{rps(base)} ({baseline_name})", value,
                ratio_text(key, base, value), target, f">= {target:.2f}" if target else "-")
    if "s1_one_worker" in runs:
        value = ratio("s1_one_worker", "direct_100ms_64c")
        row("1", "context: the first wave's default (1 worker, memory://) vs direct", rps("s1_one_worker"),
            f"{rps('direct_100ms_64c')} (direct)", value,
            ratio_text("s1_one_worker", "direct_100ms_64c", value), None, "-")
    if "s1_naive" in runs:
        value = ratio("s1_naive", "direct_100ms_64c")
        row("1", "context: naive relay vs provider direct, same conditions", rps("s1_naive"),
            f"{rps('direct_100ms_64c')} (direct)", value, ratio_text("s1_naive", "direct_100ms_64c", value),
            None, "-")
    if "s3_service" in runs and "s3_naive" in runs:
        svc_cpu = runs["s3_service"]["cpu_ms_per_request"]
        naive_cpu = runs["s3_naive"]["cpu_ms_per_request"]
        cpu_ratios = [a["cpu_ms_per_request"] / b["cpu_ms_per_request"] for a, b in zip(
            runs["s3_service"].get("rounds", [runs["s3_service"]]),
            runs["s3_naive"].get("rounds", [runs["s3_naive"]]), strict=False) if b.get("cpu_ms_per_request")]
        value = round(statistics.median(cpu_ratios), 3) if cpu_ratios else None
        shown = f"{value:.2f}x ({min(cpu_ratios):.2f}-{max(cpu_ratios):.2f})" if cpu_ratios else "-"
        row("3", "CPU time per request (master + workers) vs the naive relay, 0 ms", f"{svc_cpu:.2f} ms",
            f"{naive_cpu:.2f} ms (naive)", value, shown, TARGETS["s3_cpu_ratio"],
            f"<= {TARGETS['s3_cpu_ratio']:g}x", higher=False)
    if "s4_service" in runs and "direct_50ms_16c" in runs:
        svc_lat, base_lat = runs["s4_service"]["latency_ms"], runs["direct_50ms_16c"]["latency_ms"]
        for pct, target in (("p50", TARGETS["s4_p50_ms"]), ("p99", TARGETS["s4_p99_ms"])):
            overheads = [a["latency_ms"][pct] - b["latency_ms"][pct] for a, b in zip(
                runs["s4_service"].get("rounds", [runs["s4_service"]]),
                runs["direct_50ms_16c"].get("rounds", [runs["direct_50ms_16c"]]), strict=False)]
            overhead = round(statistics.median(overheads), 2)
            row("4", f"latency overhead {pct}: provider 50 ms, 16 conns", f"{svc_lat[pct]:.1f} ms",
                f"{base_lat[pct]:.1f} ms (direct)", overhead,
                f"+{overhead:.1f} ms ({min(overheads):+.1f} to {max(overheads):+.1f})", target,
                f"<= {target:g} ms", higher=False)
        if "s4_naive" in runs:
            for pct in ("p50", "p99"):
                overheads = [a["latency_ms"][pct] - b["latency_ms"][pct] for a, b in zip(
                    runs["s4_naive"].get("rounds", [runs["s4_naive"]]),
                    runs["direct_50ms_16c"].get("rounds", [runs["direct_50ms_16c"]]), strict=False)]
                overhead = round(statistics.median(overheads), 2)
                row("4", f"context: the naive relay's latency overhead {pct}, same conditions",
                    f"{runs['s4_naive']['latency_ms'][pct]:.1f} ms", f"{base_lat[pct]:.1f} ms (direct)",
                    overhead, f"+{overhead:.1f} ms ({min(overheads):+.1f} to {max(overheads):+.1f})",
                    None, "-", higher=False)
    for when in ("idle", "after load"):
        sizes = [m for m in data["memory"] if m["when"] == when and m["max_mb"] is not None]
        if sizes:
            worst = max(sizes, key=lambda m: m["max_mb"])
            row("5", f"RSS per worker, {when} (largest of {len(sizes)} instances)",
                f"{worst['max_mb']:.1f} MB ({worst['instance']})", "-", worst["max_mb"],
                f"{worst['max_mb']:.1f} MB", TARGETS["rss_mb"], f"<= {TARGETS['rss_mb']:g} MB",
                higher=False)
    on_and_off = (
        ("6", "budgets", "off", "budgets on (nothing refused) vs off", ", zero config", "budgets off"),
        ("7", "failover", "one", "failover on, primary healthy, vs one provider", "", "one provider"),
    )
    for scenario, on, off, what, config, baseline in on_and_off:
        for latency in (100, 0):
            target = TARGETS.get(f"s{scenario}_ratio" if latency == 100 else f"s{scenario}_ratio_0ms")
            key, base = f"s{scenario}_{latency}ms_{on}", f"s{scenario}_{latency}ms_{off}"
            if key in runs and base in runs:
                value = ratio(key, base)
                row(scenario, f"{what}: provider {latency} ms, 64 conns{config}", rps(key),
                    f"{rps(base)} ({baseline})", value, ratio_text(key, base, value),
                    target, f">= {target:.2f}" if target else "-")
    if "provider_capacity_0ms_64c" in runs and "s3_service" in runs:
        value = ratio("provider_capacity_0ms_64c", "s3_service")
        row("-", "bench check: fake provider capacity / service req/s at 0 ms",
            rps("provider_capacity_0ms_64c"), rps("s3_service") + " (service)", value,
            ratio_text("provider_capacity_0ms_64c", "s3_service", value, "x"), TARGETS["provider_headroom"],
            f">= {TARGETS['provider_headroom']:g}x")
    return rows


def _spread(run: dict[str, Any], name: str, digits: int) -> str:
    value = _figure(run, name)
    low, high = run.get("spread", {}).get(name, (value, value))
    if low == high:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


TRIP_LABELS = {
    "sqlite": "zero config (sqlite), scenarios 1, 3, 4", "redis": "STORAGE_URI=redis://, scenario 2",
    "s6_off": "budgets off, scenario 6", "s6_budgets": "budgets on, scenario 6",
    "s7_one": "one provider, scenario 7", "s7_failover": "failover configured, scenario 7",
}


def markdown(rows: list[dict[str, Any]], runs: dict[str, Any], trips: dict[str, Any] | None = None) -> str:
    lines = ["| # | measure | service | baseline | figure (median, min-max) | target | result |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scenario']} | {r['what']} | {r['service']} | {r['baseline']} | "
                     f"{r['figure_text']} | {r['target_text']} | {r['result']} |")
    if trips:
        lines += ["", "| configuration | storage round trips per send | before the provider call | after |",
                  "|---|---|---|---|"]
        for key, counted in trips.items():
            lines.append(f"| {TRIP_LABELS.get(key, key)} | {counted['per_send']:g} | "
                         f"{counted['before_provider']:g} | {counted['after_provider']:g} |")
    lines += ["", "| run (median of its rounds; min-max) | conns | ok req/s | non-2xx | p50 ms | p99 ms "
              "| CPU ms/req | workers' CPU | machine busy | foreign load |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs.values():
        cpu = _spread(run, "cpu_ms_per_request", 2) if "cpu_ms_per_request" in run else "-"
        workers = " + ".join(f"{w['cpu_pct']:.0f}%" for w in run.get("workers", [])) or "-"
        lines.append(f"| {run['label']} | {run['connections']} | {_spread(run, 'ok_per_s', 0)} | "
                     f"{run['non_2xx']} | {_spread(run, 'p50', 1)} | {_spread(run, 'p99', 1)} | {cpu} | "
                     f"{workers} | {run['machine_cpu_busy_pct']:.0f}% | "
                     f"{_spread(run, 'foreign_cpu_pct', 0)}% |")
    foreign = max((max(run.get("spread", {}).get("foreign_cpu_pct", [run["foreign_cpu_pct"]]))
                   for run in runs.values()), default=0.0)
    if foreign > FOREIGN_LOAD_WARNING:
        lines += ["", f"**Warning:** other processes used up to {foreign:.0f}% of a core during a run: "
                  "the machine was not quiet, and the figures are lower than they should be."]
    return "\n".join(lines)


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False, cwd=ROOT)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def machine() -> dict[str, Any]:
    cpu_model, mem_total = "unknown", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_total = f"{int(line.split()[1]) // 1024} MiB"
    versions = {}
    for dist in ("gunicorn", "flask", "requests", "aiohttp", "redis"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory": mem_total,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": _first_line(["wrk", "-v"]).split(" [")[0],
        "redis_server": _first_line(["redis-server", "--version"]),
        "packages": versions,
        "commit": _first_line(["git", "rev-parse", "--short", "HEAD"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="Benchmark sms-service against its provider-bound limit.")
    parser.add_argument("--duration", type=int, default=20, help="measured seconds per run (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds before each run (default 3)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measured runs per figure, after one warm-up: the median and the spread "
                             "are reported (default 3)")
    parser.add_argument("--wrk-threads", type=int, default=1,
                        help="wrk threads (default 1: leave the cores to what is measured)")
    parser.add_argument("--redis-workers", type=int, default=max(2, os.cpu_count() or 2),
                        help="gunicorn workers of scenario 2 (default: cores, at least 2)")
    parser.add_argument("--scenarios", default="1,2,3,4,6,7",
                        type=lambda s: [x.strip() for x in s.split(",")],
                        help="comma-separated subset of 1,2,3,4,6,7 (5, memory, comes with each)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for every gunicorn instance (an experiment, not the "
                             "defaults: recorded in the results)")
    parser.add_argument("--output", type=Path, help="results file (default bench/results/<date>.json)")
    args = parser.parse_args()
    if any("=" not in item for item in args.env):
        parser.error("--env takes NAME=VALUE")

    LOGS.mkdir(parents=True, exist_ok=True)
    for old in LOGS.glob("*.log"):
        old.unlink()
    started = dt.datetime.now(dt.UTC)
    print(f"sms-service bench: {args.rounds} rounds of {args.duration} s per run after {args.warmup} s "
          "of warm-up; "
          f"logs in {LOGS.relative_to(ROOT)}", flush=True)
    before = psutil.cpu_times()
    time.sleep(2)
    busy, _ = _busy_seconds(before, psutil.cpu_times())
    idle_load = round(100 * busy / 2, 1)
    if idle_load > FOREIGN_LOAD_WARNING:
        print(f"warning: the machine is already busy ({idle_load}% of a core before the bench): "
              "the figures will be low", flush=True)
    stack = Stack(LOGS)
    tmp = Path(tempfile.mkdtemp(prefix="sms-bench-"))
    try:
        data = run_scenarios(args, stack, tmp)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 2
    finally:
        stack.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    rows = evaluate(data)
    table = markdown(rows, data["runs"], data.get("round_trips"))
    facts = machine()
    result = {
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup, "wrk_threads": args.wrk_threads,
                     "rounds": args.rounds,
                     "extra_env": dict(item.split("=", 1) for item in args.env),
                     "scenarios": args.scenarios},
        "machine": facts,
        "load_before_pct_of_a_core": idle_load,
        "targets": TARGETS,
        "figures": rows,
        **data,
        "table_markdown": table,
    }
    output = args.output or RESULTS / f"{result['date']}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".tmp")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    partial.replace(output)

    note = f" (experiment: {' '.join(args.env)})" if args.env else ""
    print(f"\n## sms-service benchmark, {result['date']}{note}\n")
    print(table)
    print(f"\nMachine: {facts['nproc']} cores ({facts['cpu_model']}), {facts['memory']}, "
          f"Linux {facts['kernel']}, Python {facts['python']}, {facts['wrk']}; commit {facts['commit']}.")
    print(f"Results: {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The shell examples of README.md and docs/*.md: found, run in bash against a served instance, compared.

The convention (docs/development.md, "Examples that run"):

- A ```console block is a terminal session: a line starting `$ ` is a command (a
  trailing `\\` continues it on the next line), the lines after it, up to the next
  command or the fence's end, are what it printed.
- A command that starts the service (`make run`, `sms-service serve`, with variables
  before it) runs in the background, as in the reader's first terminal; it shows no
  output (its logs). It serves the blocks after it, up to the next `#`/`##` heading;
  a block with no such service gets a plain `make run`.
- ```sh, ```bash, ```shell and ```zsh blocks are refused: a shell example is a
  ```console block, anything else takes its own language (```ini, ```json, ```text).
- An HTML comment `<!-- example: ... -->` before a block states what the reader did by
  hand (see `ANNOTATIONS`).

Before comparing, both sides are masked: times, message and event ids, request ids,
secrets, signatures and tokens; and the loopback ports the doc names (3000, 8000,
8080, 8081) are mapped to free ones, so examples run beside other services.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
REFUSED_FENCES = {"sh", "bash", "shell", "zsh"}
DOC_PORTS = (3000, 8000, 8080, 8081)

# What an `<!-- example: KEY ARGS -->` comment says the reader did by hand.
ANNOTATIONS = {
    # The reader exported these variables in the shell that runs the block (the service a
    # block starts inherits them). `VALUE` `fake` is the URL of the test's fake provider.
    "env",
    # A second terminal runs this command during the block; the first word is the port
    # it listens on (the runner waits for it), e.g. `terminal 8000 .venv/bin/flask ...`.
    "terminal",
    # The reader saved the next fenced block as this file, in the directory of the
    # commands; it is there for every later block of the page.
    "file",
    # The block needs no running service.
    "no-service",
    # The reader works in an activated virtual environment where sms-service and its
    # bundled plugins are installed (a fresh one per block, which sees the checkout's),
    # from their home folder, outside the checkout. `venv acme` adds the plugin the guide
    # scaffolds: `sms-service new-plugin acme` run in that folder, and installed.
    "venv",
}

SERVE_COMMAND = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:make run|\S*sms-service serve)(?:\s|$)")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
ANNOTATION = re.compile(r"^<!--\s*example:\s*(\S+)\s*(.*?)\s*-->\s*$")
HEADING = re.compile(r"^#{1,2} ")


@dataclass
class Command:
    """One `$ ` command of a block and the output the doc shows for it."""

    text: str
    expected: str

    @property
    def starts_service(self) -> bool:
        return SERVE_COMMAND.match(re.sub(r"\\\n\s*", " ", self.text)) is not None


@dataclass
class Example:
    """One ```console block, with what the reader did before it."""

    path: Path
    line: int
    commands: list[Command] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    terminals: list[tuple[int, str]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    service: list[str] | None = None  # the serve commands of the block in scope, or None: none needed
    venv: list[str] | None = None  # None: no virtual environment; else the plugins scaffolded into it
    error: str | None = None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def collect(paths=DOC_FILES) -> list[Example]:
    """Every ```console block (and every refused shell fence) of the given Markdown files."""
    examples: list[Example] = []
    for path in paths:
        examples.extend(_parse(path))
    return examples


def _parse(path: Path) -> list[Example]:
    lines = path.read_text(encoding="utf-8").splitlines()
    examples: list[Example] = []
    files: dict[str, str] = {}
    pending: list[tuple[str, str]] = []
    scope_service: list[str] = ["make run"]
    i = 0
    while i < len(lines):
        line = lines[i]
        if HEADING.match(line):
            scope_service = ["make run"]
        annotation = ANNOTATION.match(line)
        if annotation:
            key, args = annotation.groups()
            if key not in ANNOTATIONS:
                examples.append(Example(path, i + 1, error=f"unknown annotation {key!r}: one of {sorted(ANNOTATIONS)}"))
            pending.append((key, args))
            i += 1
            continue
        fence = FENCE.match(line)
        if not fence:
            i += 1
            continue
        marker, lang = fence.groups()
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and not lines[i].startswith(marker):
            body.append(lines[i])
            i += 1
        i += 1
        annotations, pending = pending, []
        for key, args in annotations:
            if key == "file":
                files[args] = "\n".join(body) + "\n"
        if lang in REFUSED_FENCES:
            examples.append(Example(path, start + 1, error=(
                f"a ```{lang} block: write shell examples as ```console blocks (`$ ` commands and their "
                f"output) so they run in CI, or give a file's content its own language (```ini, ```text)")))
            continue
        if lang == "" and any(b.startswith("$ ") for b in body):
            examples.append(Example(path, start + 1, error="a shell session in a bare ``` block: make it ```console"))
            continue
        if lang != "console":
            continue
        example = Example(path, start + 1, files=dict(files))
        _read_commands(example, body)
        for key, args in annotations:
            if key == "env":
                example.env.update(_assignments(args))
            elif key == "terminal":
                port, _, command = args.partition(" ")
                example.terminals.append((int(port), command))
        serve = [c.text for c in example.commands if c.starts_service]
        if serve:
            scope_service = serve
        example.venv = next((args.split() for key, args in annotations if key == "venv"), None)
        no_service = any(key == "no-service" for key, _ in annotations)
        # A block in a virtual environment works outside the checkout, where `make run` is not.
        example.service = None if (no_service or serve or example.venv is not None) else scope_service
        examples.append(example)
    return examples


def _read_commands(example: Example, body: list[str]) -> None:
    command: list[str] | None = None
    output: list[str] = []
    for line in body:
        if command is not None and command[-1].endswith("\\") and not output:
            command.append(line)
            continue
        if line.startswith("$ "):
            if command is not None:
                example.commands.append(Command("\n".join(command), "\n".join(output)))
            command, output = [line[2:]], []
        elif command is None:
            example.error = f"output before the first `$ ` command: {line!r}"
            return
        else:
            output.append(line)
    if command is None:
        example.error = "a ```console block without a `$ ` command"
        return
    example.commands.append(Command("\n".join(command), "\n".join(output)))
    for c in example.commands:
        if c.starts_service and c.expected.strip():
            example.error = f"a command that starts the service shows no output (its logs): {c.text!r}"


def _assignments(args: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(args))


# -- masking --------------------------------------------------------------------------

MASKS = (
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT"), "<time>"),
    (re.compile(r'("(?:sid|webhookId|request_id)"\s*:\s*")[^"]*(")'), r"\1<id>\2"),
    (re.compile(r"\bevt_[0-9A-Za-z]+"), "evt_<id>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<id>"),
    (re.compile(r"(?im)^(x-request-id:\s*)\S+"), r"\1<id>"),
    (re.compile(r"(?im)^(webhook-timestamp:\s*)\d+"), r"\1<time>"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), "whsec_<secret>"),
    (re.compile(r"\bv1,[A-Za-z0-9+/=]+"), "v1,<signature>"),
    (re.compile(r"(token=)[A-Za-z0-9_.~%-]+"), r"\1<secret>"),
    (re.compile(r"\bin \d+(?:\.\d+)?s\b"), "in <duration>"),
    # pip's notes on this machine's index configuration and on its own version: not the example's.
    (re.compile(r"(?m)^WARNING: Location '[^']*' is ignored: it is neither a file nor a directory\.\n?"), ""),
    (re.compile(r"(?m)^\[notice\] .*\n?"), ""),
)


def mask(text: str) -> str:
    """`text` with ids, times and secrets masked and trailing blanks dropped."""
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


# -- running --------------------------------------------------------------------------

MARK = "@@doc-example-output {}@@"
READY_TIMEOUT = 60


@dataclass
class Outcome:
    """What each command of a block printed, and the logs of what ran beside it."""

    outputs: list[str]
    logs: str


def run(example: Example, ports: dict[int, int], fake_url: str | None, timeout: float = 180) -> Outcome:
    """Run the block's commands in one bash, in a fresh HOME, TMPDIR and working directory.

    The working directory is made of symbolic links to the checkout's top-level entries
    (so `make run` and `.venv/bin/...` work as in the checkout) plus the page's files;
    what a command writes stays there.
    """
    scratch = Path(tempfile.mkdtemp(prefix="doc-example-"))
    home, tmp, work = scratch / "home", scratch / "tmp", scratch / "work"
    for folder in (home, tmp, work):
        folder.mkdir()
    for entry in ROOT.iterdir():
        # Build outputs are left out, so a block's own `pip install -e .` writes them in its folder.
        if entry.name not in {".git", "site", "build", "dist"} and not entry.name.endswith(".egg-info"):
            (work / entry.name).symlink_to(entry)
    if example.venv is not None:
        work = home
    for name, content in example.files.items():
        (work / name).write_text(content)
    venv_bin = str(ROOT / ".venv" / "bin")
    path = ":".join(p for p in os.environ.get("PATH", "/usr/bin:/bin").split(":") if p != venv_bin)
    env = {"PATH": path, "HOME": str(home), "TMPDIR": str(tmp), "LANG": "C.UTF-8", "TERM": "dumb"}
    if example.venv is not None:
        venv = _virtual_environment(scratch / "venv")
        env["PATH"], env["VIRTUAL_ENV"] = f"{venv / 'bin'}:{env['PATH']}", str(venv)
        for plugin in example.venv:
            subprocess.run(["sms-service", "new-plugin", plugin], cwd=home, env=env, check=True,
                           capture_output=True, timeout=60)
            subprocess.run(["pip", "install", "--quiet", "-e", f"./sms-service-{plugin}"], cwd=home, env=env,
                           check=True, capture_output=True, timeout=600)
    for name, value in example.env.items():
        env[name] = fake_url if value == "fake" and fake_url else _ports(value, ports)
    out, logs = scratch / "out.txt", scratch / "logs.txt"
    script = [
        f'exec >{shlex.quote(str(out))} 2>&1 </dev/null',
        f"__ready() {{ for _ in $(seq 1 {READY_TIMEOUT * 10}); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null "
        "&& return 0; sleep 0.1; done; echo '@@not-ready@@' $1; exit 97; }",
        # The service is ready when its workers answer, not when the master listens.
        # $2 is the service's process: when it exits, it will never be healthy.
        f"__healthy() {{ for _ in $(seq 1 {READY_TIMEOUT * 10}); do curl -sf -o /dev/null "
        "http://127.0.0.1:$1/-/healthz && return 0; kill -0 $2 2>/dev/null || break; sleep 0.1; done; "
        "echo '@@not-ready@@' $1; exit 97; }",
    ]
    service_port = ports[3000]
    if example.service:
        for command in example.service:
            script += _background(command, ports, logs, service_port)
    for port, command in example.terminals:
        script.append(f"( {_ports(command, ports)} ) >>{shlex.quote(str(logs))} 2>&1 &")
        script.append(f"__ready {ports.get(port, port)}")
    for index, command in enumerate(example.commands):
        script.append(f"printf '\\n{MARK}\\n'".format(index))
        if command.starts_service:
            script += _background(command.text, ports, logs, service_port)
        else:
            script.append(_ports(command.text, ports))
    script_path = scratch / "example.sh"
    script_path.write_text("\n".join(script) + "\n")
    process = subprocess.Popen(["bash", str(script_path)], cwd=work, env=env, start_new_session=True)
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        _stop_session(process)
    text = out.read_text(errors="replace")
    outputs = []
    for index in range(len(example.commands)):
        marker = MARK.format(index)
        after = text.split(marker, 1)[1] if marker in text else "<never ran>"
        nxt = MARK.format(index + 1)
        outputs.append(_unports(after.split(nxt, 1)[0], ports))
    if "@@not-ready@@" in text:
        outputs.append("<the service or terminal never listened>")
    if timed_out:
        outputs.append(f"<the block did not finish within {timeout} s>")
    log_text = logs.read_text(errors="replace") if logs.exists() else ""
    shutil.rmtree(scratch, ignore_errors=True)
    return Outcome(outputs, log_text)


def _virtual_environment(folder: Path) -> Path:
    """A new virtual environment that sees the checkout's packages, as if sms-service were installed in it.

    pip installs into it alone, so a block's `pip install` leaves the test venv untouched.
    """
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True, timeout=300)
    purelib = Path(subprocess.run([str(folder / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  check=True, capture_output=True, text=True).stdout.strip())
    (purelib / "sms_service_checkout.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    for script in metadata.entry_points(group="console_scripts"):
        target = folder / "bin" / script.name
        if script.name.startswith("pip") or target.exists():
            continue
        module, _, function = script.value.partition(":")
        target.write_text(f"#!{folder / 'bin' / 'python'}\nimport sys\nfrom {module} import {function}\n"
                          f"sys.exit({function}())\n")
        target.chmod(0o755)
    return folder


def _background(command: str, ports: dict[int, int], logs: Path, service_port: int) -> list[str]:
    # The doc's port is mapped through HTTP_PORT (or --port, rewritten like any other). A
    # trailing `&` is the reader's way of doing what this does anyway.
    command = re.sub(r"\s*&\s*$", "", command)
    return [f"( export HTTP_PORT={service_port}; {_ports(command, ports)} ) >>{shlex.quote(str(logs))} 2>&1 &",
            f"__healthy {_served_port(command, ports, service_port)} $!"]


def _served_port(command: str, ports: dict[int, int], default: int) -> int:
    found = re.search(r"--port[ =](\d+)", command)
    return ports.get(int(found.group(1)), int(found.group(1))) if found else default


def _ports(text: str, ports: dict[int, int]) -> str:
    for doc_port, real in ports.items():
        text = re.sub(rf"(?<=[:/ =]){doc_port}\b", str(real), text)
    return text


def _unports(text: str, ports: dict[int, int]) -> str:
    for doc_port, real in ports.items():
        text = re.sub(rf"\b{real}\b", str(doc_port), text)
    return text


def _stop_session(process: subprocess.Popen, grace: float = 40) -> None:
    """SIGTERM everything the block started (services, terminals), SIGKILL what outlives `grace`."""
    pgid = process.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    process.wait()
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass

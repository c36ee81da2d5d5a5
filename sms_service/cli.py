"""The `sms-service` command: serve, list installed providers, check the configuration, start a plugin."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from sms_service.config import Settings, load_settings, required_callback_secret, storage_uri
from sms_service.exceptions import ConfigError, StorageUnavailable
from sms_service.logs import configure_logging
from sms_service.plugin_loader import installed_providers
from sms_service.storage import open_configured_storage, state_location
from sms_service.suppression import csvio as suppressions_csv
from sms_service.templates import jsonlio as templates_jsonl

T = TypeVar("T")


def _providers(_: argparse.Namespace) -> int:
    found = installed_providers()
    width = max((len(p.name) for p in found), default=4)
    for p in found:
        print(f"{p.name:<{width}}  {p.distribution} {p.version}")
    return 0


def _check_config(_: argparse.Namespace) -> int:
    """What start-up checks, each problem on one line of its own; then where the state lives."""
    from sms_service import serving
    from sms_service.startup_checks import check_providers, check_worker_count

    problems: list[str] = []

    def check(step: Callable[[], T]) -> T | None:
        try:
            return step()
        except ConfigError as exc:
            if exc.message not in problems:  # a malformed STORAGE_URI is found twice
                problems.append(exc.message)
            return None

    workers = check(serving.worker_count)
    settings = check(load_settings)
    if settings is not None:
        check(lambda: check_providers(settings))
        if workers is not None:
            check(lambda: check_worker_count(settings, workers))
    # The storage needs STORAGE_URI alone: it is checked whatever else is wrong.
    state = check(_storage_state)
    for problem in problems:
        print(f"configuration error: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"configuration OK: provider {','.join(settings.providers)}, {workers} "
          f"worker{'s' if workers != 1 else ''}, state {state}")
    if settings.redis_topology is not None and settings.redis_topology.kind != "single":
        print(f"storage: {_redis_now(settings)}")
    return 0


def _storage_state() -> str:
    open_configured_storage().close()
    return state_location(storage_uri())


def _callback_token(args: argparse.Namespace) -> int:
    from sms_service.status.callbacks import callback_token

    try:
        secret = required_callback_secret()
    except ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        return 1
    print(callback_token(secret, args.provider))
    return 0


def _redis_now(settings: Settings) -> str:
    """The Redis topology and its primary as seen now (check-config's second line)."""
    from sms_service.storage import RedisStorage

    store = RedisStorage(settings.redis_topology)
    line = settings.redis_topology.describe()
    try:
        described = store.guarded(store.describe)
    except StorageUnavailable as exc:
        return f"{line}; primary not reachable now ({exc})"
    finally:
        store.close()
    primary = described.get("primary") or ",".join(described.get("primaries", []))
    return f"{line}; primary {primary}" if "primary" in described else f"{line}; primaries {primary}"


def _serve(args: argparse.Namespace) -> int:
    # gunicorn reads WEB_CONCURRENCY with int() as it is imported, so a stray value would
    # end in its traceback: an empty one means unset, as for every other variable.
    concurrency = os.environ.get("WEB_CONCURRENCY", "").strip()
    if not concurrency:
        os.environ.pop("WEB_CONCURRENCY", None)
    elif not (concurrency.isascii() and concurrency.isdigit()):
        configure_logging("info")
        logging.getLogger(__name__).critical(
            f"configuration error: WEB_CONCURRENCY must be a whole number greater than 0, got {concurrency!r}"
        )
        return 1
    from sms_service.serving import serve

    serve(host=args.bind, port=args.port, workers=args.workers, threads=args.threads)


def _new_plugin(args: argparse.Namespace) -> int:
    from sms_service.plugin_template import write_plugin

    # A second plugin under a taken entry-point name would make SERVICE_PROVIDER ambiguous.
    taken = {p.name: p.distribution for p in installed_providers()}
    if args.name in taken:
        print(f"new-plugin: {args.name!r} is already the name of an installed provider "
              f"(from {taken[args.name]}); choose another name, such as acme", file=sys.stderr)
        return 1
    try:
        folder = write_plugin(args.name, args.directory)
    except ValueError as exc:
        print(f"new-plugin: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {folder}")
    print(f"next: cd {folder} && pip install -e '.[test]' && pytest  (guide: docs/plugins.md)")
    return 0


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number greater than 0, not {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port between 1 and 65535, not {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (`serve` exits with gunicorn's)."""
    parser = argparse.ArgumentParser(prog="sms-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="run the service under gunicorn with its packaged settings",
        description="Run the service under gunicorn with its packaged settings, from any directory. "
        "Flags win over their environment variables; GUNICORN_CMD_ARGS applies in between.",
    )
    serve.add_argument("--port", type=_port, help="listen port (HTTP_PORT, default 3000)")
    serve.add_argument("--bind", metavar="HOST", help="listen address (HTTP_BIND_HOST, default 0.0.0.0)")
    serve.add_argument("--workers", type=_positive,
                       help="worker processes (WEB_CONCURRENCY, default: the available CPUs)")
    serve.add_argument("--threads", type=_positive,
                       help="threads, and connections, per worker (GUNICORN_THREADS, default 64)")
    serve.set_defaults(run=_serve)
    commands.add_parser("providers", help="list installed provider plugins").set_defaults(run=_providers)
    commands.add_parser(
        "check-config", help="check what start-up checks (variables, providers, storage, workers)",
        description="Check what start-up checks: every variable, each provider's variables, the storage "
        "reachable and writable, the worker count against the storage. Prints each problem on one line, "
        "or where the state lives.",
    ).set_defaults(
        run=_check_config
    )
    suppressions_csv.add_parser(commands)
    token = commands.add_parser(
        "callback-token", help="print the ?token= of a provider's callback URLs (from CALLBACK_SECRET)",
        description="Print the token the service puts in the callback URLs of a provider that cannot sign "
        "its callbacks (console, kaleyra), derived from CALLBACK_SECRET: for posting a trial callback "
        "by hand. Exits 1 when CALLBACK_SECRET is not set.",
    )
    token.add_argument("provider", help="the provider's SERVICE_PROVIDER name, such as console")
    token.set_defaults(run=_callback_token)
    templates_jsonl.add_parser(commands)
    new_plugin = commands.add_parser(
        "new-plugin", help="write a new provider plugin distribution to start from",
        description="Write a ready provider plugin distribution (pyproject.toml with the entry point, "
        "the provider module with TODOs, a README, tests using sms_service.testing) into a new folder.",
    )
    new_plugin.add_argument("name", help="the SERVICE_PROVIDER name: lower-case letters, digits and _")
    new_plugin.add_argument("--directory", metavar="DIR",
                            help="the folder to create (default ./sms-service-NAME); must not exist")
    new_plugin.set_defaults(run=_new_plugin)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

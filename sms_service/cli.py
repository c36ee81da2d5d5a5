"""The `sms-service` command: serve, list installed providers, check the configuration, start a plugin."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from sms_service.config import load_settings
from sms_service.exceptions import ConfigError
from sms_service.logs import configure_logging
from sms_service.plugin_loader import installed_providers, load_providers
from sms_service.suppression import csvio as suppressions_csv
from sms_service.templates import jsonlio as templates_jsonl


def _providers(_: argparse.Namespace) -> int:
    found = installed_providers()
    width = max((len(p.name) for p in found), default=4)
    for p in found:
        print(f"{p.name:<{width}}  {p.distribution} {p.version}")
    return 0


def _check_config(_: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        for provider in load_providers(settings).values():
            provider.close()
    except ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        return 1
    storage = "shared" if settings.shared_storage else "this process only"
    print(f"configuration OK: provider {','.join(settings.providers)}, storage {storage}")
    return 0


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
    commands.add_parser("check-config", help="validate the environment and exit 0 or 1").set_defaults(
        run=_check_config
    )
    suppressions_csv.add_parser(commands)
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

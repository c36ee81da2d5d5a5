"""The `sms-service` command: list installed providers, check the configuration."""

from __future__ import annotations

import argparse
import sys

from sms_service.config import load_settings
from sms_service.exceptions import ConfigError
from sms_service.plugin_loader import installed_providers, load_provider


def _providers(_: argparse.Namespace) -> int:
    found = installed_providers()
    width = max((len(p.name) for p in found), default=4)
    for p in found:
        print(f"{p.name:<{width}}  {p.distribution} {p.version}")
    return 0


def _check_config(_: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        load_provider(settings).close()
    except ConfigError as exc:
        print(f"configuration error: {exc.message}", file=sys.stderr)
        return 1
    storage = "shared" if settings.shared_storage else "this process only"
    print(f"configuration OK: provider {settings.provider}, storage {storage}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="sms-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("providers", help="list installed provider plugins").set_defaults(run=_providers)
    commands.add_parser("check-config", help="validate the environment and exit 0 or 1").set_defaults(
        run=_check_config
    )
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

"""The template `sms-service new-plugin` writes: a provider plugin distribution.

The ``*.tmpl`` files beside this module are package data; names in braces are filled
in by `write_plugin` (doubled braces are literal ones).
"""

from __future__ import annotations

import keyword
import re
from importlib import resources
from pathlib import Path

from sms_service.provider import PLUGIN_API

_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
# Template path -> path in the new distribution ("package" becomes the import name).
_FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "package/__init__.py.tmpl": "{package}/__init__.py",
    "package/provider.py.tmpl": "{package}/provider.py",
    "tests/test_conformance.py.tmpl": "tests/test_conformance.py",
    "tests/test_entry_point.py.tmpl": "tests/test_entry_point.py",
}


def fields(name: str) -> dict[str, str]:
    """The values filled into the template for provider `name`."""
    if not _NAME.fullmatch(name) or keyword.iskeyword(name) or name.endswith("_"):
        raise ValueError(
            f"{name!r} is not a provider name: use lower-case ASCII letters, digits and _, "
            "starting with a letter (it becomes SERVICE_PROVIDER and the <NAME>_* variable prefix)"
        )
    title = "".join(part.capitalize() for part in name.split("_") if part)
    major, minor = PLUGIN_API
    return {
        "name": name,
        "title": title,
        "cls": f"{title}Provider",
        "dist": f"sms-service-{name.replace('_', '-')}",
        "package": f"sms_service_{name}",
        "env": name.upper(),
        "default_url": f"https://api.{name.replace('_', '-')}.example",
        "api_major": str(major),
        "api_minor": str(minor),
        "api_range": f">={_core_floor()},<{_core_ceiling()}",
    }


def write_plugin(name: str, directory: str | None = None) -> Path:
    """Write the distribution for provider `name` into `directory` (created; must not exist)."""
    values = fields(name)
    folder = Path(directory or values["dist"])
    if folder.exists():
        raise ValueError(f"{folder} already exists; choose another --directory")
    root = resources.files(__name__)
    for source, target in _FILES.items():
        text = root.joinpath(source).read_text(encoding="utf-8").format(**values)
        path = folder / target.format(**values)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def _core_floor() -> str:
    # The first sms-service release with this plugin API (1.2).
    return "0.3"


def _core_ceiling() -> str:
    # A new plugin API major comes with a new sms-service major at the latest.
    return "2"

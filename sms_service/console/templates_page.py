"""The console's Templates page: the list, one template's versions, a new version, a preview."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from marshmallow import ValidationError

from sms_service.console.views import bp
from sms_service.errors import validation_message
from sms_service.exceptions import PersonalisationInvalid, TemplateNotFound
from sms_service.schemas import TEMPLATE_NAME_RULE
from sms_service.templates.schemas import TemplatePutSchema
from sms_service.templates.service import Version, valid_name

log = logging.getLogger(__name__)

# A template page shows this many of the newest versions (each is one storage read).
VERSIONS_SHOWN = 50
_PUT_SCHEMA = TemplatePutSchema()


def _templates() -> Any:
    return current_app.extensions["sms_service"].templates


@bp.route("/templates")
def templates() -> tuple[str, int]:
    """Every template's latest version, archived ones included, and a form for a new one."""
    return _list_page({}, None)


@bp.route("/templates", methods=["POST"])
def template_new() -> Response | tuple[str, int]:
    """Store the first version of a template (or a new one of an existing name)."""
    form = _content_form(request.form)
    form["name"] = (request.form.get("name") or "").strip()
    if not valid_name(form["name"]):
        return _list_page(form, f"name: {TEMPLATE_NAME_RULE}", 400)
    error = _store(form["name"], form)
    if error is not None:
        return _list_page(form, error, 400)
    return redirect(url_for("console.template", name=form["name"]))


@bp.route("/templates/<name>")
def template(name: str) -> tuple[str, int]:
    """One template: its versions with their bodies, a new-version form and a preview form."""
    return _template_page(name)


@bp.route("/templates/<name>/versions", methods=["POST"])
def template_put(name: str) -> Response | tuple[str, int]:
    """Store a new version, unless the latest already has this very content (as PUT /templates/{name})."""
    _known(name)
    form = _content_form(request.form)
    error = _store(name, form)
    if error is not None:
        return _template_page(name, form=form, put_error=error, status=400)
    return redirect(url_for("console.template", name=name))


@bp.route("/templates/<name>/preview", methods=["POST"])
def template_preview(name: str) -> tuple[str, int]:
    """Render the latest version with the typed personalisation; nothing is sent, nothing logged."""
    _known(name)
    typed = request.form.get("personalisation") or ""
    try:
        values = parse_personalisation(typed)
        # The rendered text goes into this answer only: never a log line, never a URL.
        shown = _templates().preview(name, values)
    except ValueError as exc:
        return _template_page(name, typed=typed, preview_error=str(exc), status=400)
    except (PersonalisationInvalid, TemplateNotFound) as exc:
        status = 404 if isinstance(exc, TemplateNotFound) else 400
        return _template_page(name, typed=typed, preview_error=exc.message, status=status)
    return _template_page(name, typed=typed, preview=shown)


def parse_personalisation(text: str) -> dict[str, Any]:
    """The typed personalisation: a JSON object, or ``key=value`` lines (blank lines skipped).

    Raises `ValueError` naming the line or the problem, never a value.
    """
    if text.lstrip().startswith("{"):
        try:
            values = json.loads(text)
        except ValueError:
            raise ValueError("personalisation: not valid JSON") from None
        return values  # a text starting with { is an object, or not JSON at all
    values = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.strip():
            raise ValueError(f"personalisation: line {number} is not key=value")
        values[key.strip()] = value.strip()
    return values


def _content_form(form: Any) -> dict[str, str]:
    return {field: form.get(field) or "" for field in ("body", "description", "providerIds")}


def _store(name: str, form: dict[str, str]) -> str | None:
    """Store the form's version; the refusal's message as PUT /templates/{name} words it, or None."""
    data: dict[str, Any] = {"body": form["body"].replace("\r\n", "\n")}
    if form["description"].strip():
        data["description"] = form["description"].strip()
    if form["providerIds"].strip():
        try:
            data["providerIds"] = json.loads(form["providerIds"])
        except ValueError:
            return "providerIds: not valid JSON"
    try:
        content = _PUT_SCHEMA.load(data)
        version, created = _templates().put(name, content["body"], content.get("description"),
                                            content.get("providerIds"))
    except ValidationError as exc:
        return validation_message(exc.messages)
    except ValueError as exc:
        return str(exc)
    flash(f"Stored version {version.version}." if created
          else f"Version {version.version} already has this content: no new version.")
    return None


def _known(name: str) -> None:
    if not valid_name(name) or _templates().version(name) is None:
        abort(404, description=f"no template named {name}")


def _list_page(form: dict[str, str], error: str | None, status: int = 200) -> tuple[str, int]:
    rows = [_row(version) for version in _templates().summaries()]
    return render_template("console/templates.html", page="templates", rows=rows, form=form,
                           error=error), status


def _template_page(name: str, *, form: dict[str, str] | None = None, put_error: str | None = None,
                   typed: str = "", preview: dict[str, Any] | None = None, preview_error: str | None = None,
                   status: int = 200) -> tuple[str, int]:
    templates = _templates()
    found = templates.history(name) if valid_name(name) else None
    if found is None:
        abort(404, description=f"no template named {name}")
    latest, entries = found
    versions = []
    for entry in reversed(entries[-VERSIONS_SHOWN:]):
        version = latest if entry["version"] == latest.version else templates.version(name, entry["version"])
        if version is not None:
            versions.append(_row(version))
    if form is None:  # the new-version form starts from the latest version's content
        ids = json.dumps(latest.provider_ids, indent=2, ensure_ascii=False) if latest.provider_ids else ""
        form = {"body": latest.body, "description": latest.description or "", "providerIds": ids}
    return render_template("console/template.html", page="templates", t=_row(latest), versions=versions,
                           count=len(entries), form=form, put_error=put_error, typed=typed, preview=preview,
                           preview_error=preview_error), status


def _row(version: Version) -> dict[str, Any]:
    return version.public()

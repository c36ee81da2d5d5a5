"""The admin routes /templates (ADMIN_API_KEYS) and POST /templates/{name}/preview (API_KEYS)."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, current_app, g, jsonify, request
from flask_smorest import abort as smorest_abort

from sms_service.errors import ServiceBlueprint
from sms_service.schemas import TEMPLATE_NAME_RULE, ErrorSchema
from sms_service.suppression.routes import require_admin
from sms_service.templates.schemas import (
    PreviewRequestSchema,
    PreviewSchema,
    TemplateListSchema,
    TemplatePutSchema,
    TemplateSchema,
    TemplateVersionSchema,
)
from sms_service.templates.service import MAX_VERSION, NAME_PATTERN, valid_name

bp = ServiceBlueprint("templates", __name__, url_prefix="",
                      description="Message templates: versioned bodies with ((placeholders))")

_NAME = {"name": "name", "in": "path", "required": True, "description": "the template's name",
         "schema": {"type": "string", "pattern": NAME_PATTERN, "example": "otp"}}
_ADMIN_ERRORS = {
    400: "the name or the body is not valid",
    401: "the admin bearer key is missing or wrong",
    404: "no such template (or version), or ADMIN_API_KEYS is unset (every method)",
    503: "shared storage unavailable",
}
_JSON_BODIES = ("templates.put_template", "templates.preview")


@bp.before_request
def authorize() -> None:
    """Admin key for managing, the /send API key for previews; JSON bodies only; before any parsing."""
    if request.endpoint == "templates.preview":
        g.caller = current_app.extensions["sms_service"].authorize(request.headers.get("Authorization"))
    else:
        require_admin()
    if request.endpoint in _JSON_BODIES and request.mimetype != "application/json":
        abort(415)


def _name(name: str) -> str:
    if not valid_name(name):
        smorest_abort(400, message=f"name: {TEMPLATE_NAME_RULE}")
    return name


def _admin(view):
    view = bp.doc(parameters=[_NAME], security=[{"adminKey": []}])(view)
    for status, description in _ADMIN_ERRORS.items():
        view = bp.alt_response(status, schema=ErrorSchema, description=description)(view)
    return view


@bp.route("/templates/<name>", methods=["PUT"])
@bp.arguments(TemplatePutSchema, location="json", description="the version's content")
@bp.response(201, TemplateVersionSchema,
             description="a new version was stored (the first, or new content, or the template was archived)")
@bp.alt_response(200, schema=TemplateVersionSchema,
                 description="the latest version already has this content: kept, no new version")
@bp.alt_response(415, schema=ErrorSchema, description="Content-Type is not application/json")
@_admin
def put_template(data: dict[str, Any], name: str) -> Response:
    """Store a new version of a template, unless its latest version has this very content."""
    services = current_app.extensions["sms_service"]
    try:
        version, created = services.templates.put(_name(name), data["body"], data.get("description"),
                                                  data.get("providerIds"))
    except ValueError as exc:
        smorest_abort(400, message=str(exc))
    response = jsonify(version.public())
    response.status_code = 201 if created else 200
    return response


@bp.route("/templates/<name>", methods=["GET"])
@bp.response(200, TemplateSchema, description="the latest version and the list of versions")
@_admin
def get_template(name: str) -> Response:
    """Read a template: its latest version (archived or not) and its versions."""
    services = current_app.extensions["sms_service"]
    found = services.templates.history(_name(name))
    if found is None:
        smorest_abort(404, message=f"no template named {name}")
    latest, versions = found
    return jsonify({**latest.public(), "versions": versions})


@bp.route("/templates/<name>/versions/<int:number>", methods=["GET"])
@bp.response(200, TemplateVersionSchema, description="that version")
@bp.doc(parameters=[{"name": "number", "in": "path", "required": True,
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_VERSION}}])
@_admin
def get_version(name: str, number: int) -> Response:
    """Read one version of a template (archived ones too: versions stay readable)."""
    services = current_app.extensions["sms_service"]
    version = services.templates.version(_name(name), number)
    if version is None:
        smorest_abort(404, message=f"template {name} has no version {number}")
    return jsonify(version.public())


@bp.route("/templates/<name>", methods=["DELETE"])
@bp.response(204, description="archived: sends with it get 404, its versions stay readable, a later PUT "
                              "brings it back as the next version")
@_admin
def delete_template(name: str) -> Response:
    """Archive a template."""
    services = current_app.extensions["sms_service"]
    if not services.templates.archive(_name(name)):
        found = services.templates.version(name)
        smorest_abort(404, message=f"template {name} is already archived" if found is not None
                      else f"no template named {name}")
    return Response(status=204)


@bp.route("/templates", methods=["GET"])
@bp.response(200, TemplateListSchema, description="every template's latest version, by name")
@bp.doc(security=[{"adminKey": []}])
@bp.alt_response(401, schema=ErrorSchema, description=_ADMIN_ERRORS[401])
@bp.alt_response(404, schema=ErrorSchema, description="ADMIN_API_KEYS is unset")
@bp.alt_response(503, schema=ErrorSchema, description=_ADMIN_ERRORS[503])
def list_templates() -> Response:
    """List the templates, archived ones included."""
    services = current_app.extensions["sms_service"]
    return jsonify({"templates": [version.public() for version in services.templates.summaries()]})


@bp.route("/templates/<name>/preview", methods=["POST"])
@bp.arguments(PreviewRequestSchema, location="json", description="the personalisation /send would get")
@bp.response(200, PreviewSchema, description="the text a send would carry; nothing is sent")
@bp.doc(parameters=[_NAME])
@bp.alt_response(400, schema=ErrorSchema, description="the personalisation does not fit the template, or the "
                                                      "rendered text breaks a body rule")
@bp.alt_response(401, schema=ErrorSchema, description="API_KEYS is set and the key is missing or wrong")
@bp.alt_response(404, schema=ErrorSchema, description="no such template or version, or it is archived")
@bp.alt_response(415, schema=ErrorSchema, description="Content-Type is not application/json")
@bp.alt_response(503, schema=ErrorSchema, description="shared storage unavailable")
def preview(data: dict[str, Any], name: str) -> Response:
    """Render a template as /send would, and send nothing."""
    services = current_app.extensions["sms_service"]
    return jsonify(services.templates.preview(name, data["personalisation"], data.get("templateVersion")))

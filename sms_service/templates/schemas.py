"""marshmallow schemas of the template routes: they validate the requests and document the answers."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields, validate

from sms_service.schemas import BODY_MAX

_IDS = {"description": "a provider's entry-point name -> its ids for this template, passed to that provider "
                       "only (kaleyra: template_id; vonage: entity-id, content-id)",
        "example": {"kaleyra": {"template_id": "1107161234567890123"}}}
_IDS_TYPE = {"type": "object", "additionalProperties": {"type": "string"}}


class TemplatePutSchema(ma.Schema):
    """Body of PUT /templates/{name}: the content of a version."""

    class Meta:
        unknown = ma.RAISE

    body = fields.String(required=True, metadata={
        "description": "the text, with ((placeholders)): names of letters, digits, _, - and spaces, 1 to 64, "
                       "matched case-insensitively; at most 20 distinct; the body rules of /send apply",
        "minLength": 1, "maxLength": BODY_MAX, "example": "Your code is ((code)). It expires in 10 minutes."})
    description = fields.String(allow_none=True, metadata={
        "description": "for operators, at most 500 characters", "example": "login one-time code"})
    # Checked by the service, whose messages name the provider and the id.
    providerIds = fields.Dict(keys=fields.String(), values=fields.Raw(metadata=_IDS_TYPE), metadata=_IDS)


class TemplateVersionSchema(ma.Schema):
    """One immutable version of a template."""

    name = fields.String(required=True, metadata={"example": "otp"})
    version = fields.Integer(required=True, metadata={"example": 1})
    body = fields.String(required=True, metadata={"example": "Your code is ((code))."})
    description = fields.String(required=True, allow_none=True, metadata={"example": "login one-time code"})
    providerIds = fields.Dict(required=True, keys=fields.String(),
                              values=fields.Dict(keys=fields.String(), values=fields.String()), metadata=_IDS)
    placeholders = fields.List(fields.String(), required=True, metadata={
        "description": "its distinct placeholder names, as first written", "example": ["code"]})
    createdAt = fields.String(required=True, metadata={"description": "ISO 8601 UTC",
                                                       "example": "2021-08-13T12:53:52.959Z"})
    archived = fields.Boolean(required=True, metadata={
        "description": "the template is archived (sends get 404 until a later PUT)", "example": False})


class VersionEntrySchema(ma.Schema):
    """A version in a template's list of versions."""

    version = fields.Integer(required=True, metadata={"example": 1})
    createdAt = fields.String(required=True, metadata={"example": "2021-08-13T12:53:52.959Z"})


class TemplateSchema(TemplateVersionSchema):
    """A template: its latest version, and the list of all its versions."""

    versions = fields.List(fields.Nested(VersionEntrySchema), required=True)


class TemplateListSchema(ma.Schema):
    """Every template's latest version, archived ones included, by name."""

    templates = fields.List(fields.Nested(TemplateVersionSchema), required=True)


class PreviewRequestSchema(ma.Schema):
    """Body of POST /templates/{name}/preview."""

    class Meta:
        unknown = ma.RAISE

    personalisation = fields.Dict(
        keys=fields.String(), values=fields.Raw(metadata={"type": "string", "maxLength": 1600}),
        load_default=dict,
        metadata={"description": "a value for each placeholder, as /send takes it",
                  "example": {"code": "123456"}})
    templateVersion = fields.Integer(strict=True, validate=validate.Range(min=1, max=2**31 - 1), metadata={
        "description": "the version to render (default: the latest)", "example": 1})


class PreviewSchema(ma.Schema):
    """What a send with this personalisation would carry; nothing is sent."""

    body = fields.String(required=True, metadata={"example": "Your code is 123456."})
    numSegments = fields.String(required=True, metadata={"example": "1"})
    encoding = fields.String(required=True, metadata={"enum": ["GSM-7", "UCS-2"], "example": "GSM-7"})
    version = fields.Integer(required=True, metadata={"example": 1})

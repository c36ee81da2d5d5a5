"""marshmallow schemas of the suppression routes (they document the OpenAPI answers)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from sms_service.suppression.service import SOURCES


class SuppressionSchema(ma.Schema):
    """One number on the suppression list: masked, with where the opt-out came from."""

    number = fields.String(required=True, metadata={
        "description": "the number, masked (country code and last two digits)", "example": "+1***10"})
    source = fields.String(required=True, metadata={
        "description": "inbound (the person replied STOP), provider (the provider reported the opt-out) "
                       "or admin (this API or the CLI)", "enum": list(SOURCES), "example": "inbound"})
    since = fields.String(required=True, metadata={
        "description": "when it was first added, ISO 8601 UTC", "example": "2021-08-13T12:53:52.959Z"})

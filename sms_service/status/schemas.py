"""marshmallow schemas of the delivery-status routes (they document the OpenAPI answers)."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import fields

from sms_service.status.model import STATUSES

_STATUS = {"description": "normalised status", "enum": list(STATUSES), "example": "delivered"}


class HistoryEntrySchema(ma.Schema):
    """One status a message went through, in arrival order."""

    status = fields.String(required=True, metadata=_STATUS)
    providerStatus = fields.String(required=True, metadata={"description": "the provider's own word",
                                                            "example": "delivered"})
    errorCode = fields.String(required=True, allow_none=True,
                              metadata={"description": "the provider's error code, or null", "example": None})
    at = fields.String(required=True, metadata={"description": "when the service learnt it, ISO 8601 UTC",
                                                "example": "2021-08-13T12:53:55.120Z"})


class WebhookFailureSchema(ma.Schema):
    """A status webhook event that was never delivered (STATUS_WEBHOOK_RETRY_FOR ran out)."""

    webhookId = fields.String(required=True, metadata={"description": "the event's webhook-id",
                                                       "example": "evt_3f0c9d1e8b7a4c2d9e6f5a4b3c2d1e0f"})
    status = fields.String(required=True, metadata={**_STATUS, "description": "the status it reported"})
    attempts = fields.Integer(required=True, metadata={"example": 30})
    lastResult = fields.String(required=True, metadata={
        "enum": ["http_error", "redirect", "timeout", "connection_error"], "example": "http_error"})
    at = fields.String(required=True, metadata={"description": "when it was given up, ISO 8601 UTC",
                                                "example": "2021-08-14T12:53:55.120Z"})


class TemplateUseSchema(ma.Schema):
    """The template a message was rendered from (SPEC section 16): never its text."""

    name = fields.String(required=True, metadata={"example": "otp"})
    version = fields.Integer(required=True, metadata={"example": 3})


class MessageSchema(ma.Schema):
    """The record of one accepted message: never its body, never the full number."""

    sid = fields.String(required=True, metadata={"description": "provider message id"})
    provider = fields.String(required=True, metadata={"example": "twilio"})
    receiver = fields.String(required=True, metadata={
        "description": "masked: country code and last two digits", "example": "+1***10"})
    country = fields.String(required=True, allow_none=True, metadata={"description": "ISO 3166 alpha-2",
                                                                       "example": "US"})
    numSegments = fields.String(required=True, metadata={"example": "1"})
    encoding = fields.String(required=True, metadata={"enum": ["GSM-7", "UCS-2"], "example": "GSM-7"})
    dateEvent = fields.String(required=True, metadata={"description": "acceptance, ISO 8601 UTC",
                                                       "example": "2021-08-13T12:53:52.959Z"})
    status = fields.String(required=True, metadata=_STATUS)
    providerStatus = fields.String(required=True, metadata={"example": "delivered"})
    errorCode = fields.String(required=True, allow_none=True, metadata={"example": None})
    updatedAt = fields.String(required=True, metadata={"example": "2021-08-13T12:53:55.120Z"})
    history = fields.List(fields.Nested(HistoryEntrySchema), required=True)
    template = fields.Nested(TemplateUseSchema, required=True, allow_none=True, metadata={
        "description": "the template and version the message was sent with, or null for a plain body"})
    webhookFailures = fields.List(fields.Nested(WebhookFailureSchema), metadata={
        "description": "only with STATUS_WEBHOOK_URL set: this message's status webhook events that ran "
                       "out of retries (empty when none)"})


"""marshmallow schemas of the delivery-status routes (they document the OpenAPI answers)."""

from __future__ import annotations

import datetime as dt

import marshmallow as ma
from marshmallow import fields, validate

from sms_service.schemas import validate_receiver
from sms_service.status import listing
from sms_service.status.model import ALL_STATUSES

LISTED_STATUSES = ALL_STATUSES

_STATUS = {"description": "normalised status (``unknown``: no final report came within MESSAGE_FINAL_AFTER)",
           "enum": list(ALL_STATUSES), "example": "delivered"}


class HistoryEntrySchema(ma.Schema):
    """One status a message went through, in arrival order."""

    status = fields.String(required=True, metadata=_STATUS)
    providerStatus = fields.String(required=True, metadata={"description": "the provider's own word",
                                                            "example": "delivered"})
    errorCode = fields.String(required=True, allow_none=True,
                              metadata={"description": "the provider's error code, or null", "example": None})
    at = fields.String(required=True, metadata={"description": "when the service learnt it, ISO 8601 UTC",
                                                "example": "2021-08-13T12:53:55.120Z"})
    source = fields.String(metadata={
        "description": "``lookup`` when the reconciler asked the provider (absent otherwise)",
        "example": "lookup"})


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
    price = fields.String(required=True, allow_none=True, metadata={
        "description": "what the provider charged, when it said (send answer, callback or lookup): a "
                       "positive decimal string as the provider wrote it, sign dropped; null until known",
        "example": "0.0079"})
    priceUnit = fields.String(required=True, allow_none=True, metadata={
        "description": "the price's ISO 4217 currency", "example": "USD"})
    history = fields.List(fields.Nested(HistoryEntrySchema), required=True)
    template = fields.Nested(TemplateUseSchema, required=True, allow_none=True, metadata={
        "description": "the template and version the message was sent with, or null for a plain body"})
    webhookFailures = fields.List(fields.Nested(WebhookFailureSchema), metadata={
        "description": "only with STATUS_WEBHOOK_URL set: this message's status webhook events that ran "
                       "out of retries (empty when none)"})



class MessageListQuerySchema(ma.Schema):
    """The filters of GET /messages: each one left out matches every message."""

    status = fields.String(validate=validate.OneOf(LISTED_STATUSES), metadata={
        "description": "only messages in this normalised status"})
    provider = fields.String(validate=validate.Length(min=1, max=64), metadata={
        "description": "only messages sent through this provider (entry-point name)", "example": "twilio"})
    template = fields.String(validate=validate.Length(min=1, max=128), metadata={
        "description": "only messages sent from the template of this name", "example": "otp"})
    since = fields.AwareDateTime(format="iso", default_timezone=dt.UTC, metadata={
        "description": "only messages sent at or after this time (ISO 8601; UTC when no offset is given)",
        "example": "2021-08-13T00:00:00Z"})
    until = fields.AwareDateTime(format="iso", default_timezone=dt.UTC, metadata={
        "description": "only messages sent before this time (ISO 8601)", "example": "2021-08-14T00:00:00Z"})
    receiver = fields.String(validate=validate_receiver, metadata={
        "description": "only messages to this full E.164 number (matched through a keyed hash: the number "
                       "itself is never stored)", "example": "+14155550110"})
    limit = fields.Integer(load_default=listing.DEFAULT_LIMIT,
                           validate=validate.Range(min=1, max=listing.MAX_LIMIT),
                           metadata={"description": "at most this many messages (1 to 100)"})
    cursor = fields.String(validate=validate.Length(max=1024), metadata={
        "description": "the `next` of the previous page"})

    @ma.validates("cursor")
    def _cursor(self, value: str, **_: object) -> None:
        try:
            listing.decode_cursor(value)
        except ValueError:
            raise ma.ValidationError("not a cursor of this listing") from None

    @ma.validates_schema
    def _span(self, data: dict, **_: object) -> None:
        if data.get("since") and data.get("until") and data["since"] >= data["until"]:
            raise ma.ValidationError("must be later than since", "until")


class MessageListSchema(ma.Schema):
    """A page of the caller's messages, newest first."""

    messages = fields.List(fields.Nested(MessageSchema), required=True)
    next = fields.String(required=True, allow_none=True, metadata={
        "description": "the cursor of the next page, or null on the last one"})

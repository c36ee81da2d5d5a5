"""marshmallow schemas of the API: they validate requests and generate the OpenAPI document."""

from __future__ import annotations

import unicodedata
from typing import Any

import marshmallow as ma
from marshmallow import ValidationError, fields, validates_schema

from sms_service import phone

# [0-9], not \d: a validator in another language (or Python's re) reads \d as any Unicode digit.
SENDER_PATTERN = r"^(\+[1-9][0-9]{1,14}|[0-9]{3,8}|(?=[A-Za-z0-9 ]*[A-Za-z])[A-Za-z0-9 ]{1,11})$"
RECEIVER_PATTERN = r"^\+[1-9][0-9]{1,14}$"
BODY_MAX = 1600
TEMPLATE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
TEMPLATE_NAME_RULE = "not a template name (a-z, 0-9, _ and -, at most 64, starting with a letter or digit)"
# The fields that send with a template instead of a body (SPEC section 16).
TEMPLATE_FIELDS = ("template", "personalisation", "templateVersion")


def validate_sender(value: str) -> None:
    """Accept an E.164 number, a 3-8 digit short code or an alphanumeric sender ID."""
    if not (
        phone.is_e164(value)
        or phone.SHORT_CODE.fullmatch(value)
        or phone.ALPHANUMERIC_ID.fullmatch(value)
    ):
        raise ValidationError(
            "not an E.164 number, a 3 to 8 digit short code, or an alphanumeric sender ID "
            "of 1 to 11 letters, digits and spaces"
        )


def validate_receiver(value: str) -> None:
    """Accept a strict E.164 number that is possible for its country."""
    if not phone.is_e164(value):
        raise ValidationError("not an E.164 phone number")
    if not phone.is_possible(value):
        raise ValidationError("not a possible phone number for its country")


def validate_body(value: str) -> None:
    """Accept 1 to 1600 characters of printable Unicode text, not only whitespace."""
    if len(value) > BODY_MAX:
        raise ValidationError(f"longer than {BODY_MAX} characters")
    if not value.strip():
        raise ValidationError("must not be empty or only whitespace")
    for ch in value:
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise ValidationError("contains an invalid Unicode character (lone surrogate)")
        if ch not in "\n\r" and unicodedata.category(ch) == "Cc":
            raise ValidationError(f"contains a control character (U+{ord(ch):04X})")


_SEND_FIELDS = {"sender": validate_sender, "receiver": validate_receiver, "body": validate_body}


def load_send_request(data: Any) -> dict[str, Any]:
    """Validate a decoded /send body exactly as `SendRequestSchema().load` would.

    Raises `ValidationError` with the schema's own messages. A request with a `body` and
    no template field (the hot path) skips marshmallow's machinery; one that names a
    template (which needs a storage read anyway) goes through the schema itself. A test
    holds the two to the same answers for any input.
    """
    if not isinstance(data, dict):
        raise ValidationError({"_schema": ["Invalid input type."]})
    # Three dict look-ups, not a generator over TEMPLATE_FIELDS: this runs on every send.
    if "body" not in data or "template" in data or "personalisation" in data or "templateVersion" in data:
        return _SEND_SCHEMA.load(data)
    errors: dict[str, list[str]] = {}
    for name, validate in _SEND_FIELDS.items():
        if name not in data:
            errors[name] = ["Missing data for required field."]
            continue
        value = data[name]
        if value is None:
            errors[name] = ["Field may not be null."]
        elif not isinstance(value, str):
            errors[name] = ["Not a valid string."]
        else:
            try:
                validate(value)
            except ValidationError as exc:
                errors[name] = exc.messages
    for name in data:
        if name not in _SEND_FIELDS:
            errors[name] = ["Unknown field."]
    if errors:
        raise ValidationError(errors)
    return {name: data[name] for name in _SEND_FIELDS}


class SendRequestSchema(ma.Schema):
    """Body of POST /send."""

    class Meta:
        unknown = ma.RAISE

    sender = fields.String(
        required=True,
        validate=validate_sender,
        metadata={"description": "E.164 number, short code or alphanumeric sender ID",
                  "pattern": SENDER_PATTERN, "minLength": 1, "maxLength": 16,
                  "example": "+15017122661"},
    )
    receiver = fields.String(
        required=True,
        validate=validate_receiver,
        metadata={"description": "recipient in E.164", "pattern": RECEIVER_PATTERN,
                  "minLength": 3, "maxLength": 16, "example": "+15558675310"},
    )
    body = fields.String(
        validate=validate_body,
        metadata={"description": "message text; long texts are sent as several segments. Required unless "
                                 "`template` is given (never both)",
                  "minLength": 1, "maxLength": BODY_MAX,
                  "example": "Your SMS body"},
    )
    template = fields.String(
        validate=ma.validate.Regexp(TEMPLATE_NAME_PATTERN, error=TEMPLATE_NAME_RULE),
        metadata={"description": "send this template, rendered with `personalisation`, instead of a `body`; "
                                 "an unknown or archived template is a 404",
                  "pattern": TEMPLATE_NAME_PATTERN, "example": "otp"},
    )
    # Values are checked by the renderer, whose messages name the key (marshmallow's would
    # say "personalisation.code.value").
    personalisation = fields.Dict(
        keys=fields.String(), values=fields.Raw(metadata={"type": "string", "maxLength": 1600}),
        metadata={"description": "with `template`: a value for each of its placeholders (names matched "
                                 "case-insensitively, spaces trimmed), each at most 1,600 characters and "
                                 "inserted verbatim; a key no placeholder uses is a 400. Never logged or "
                                 "stored",
                  "example": {"code": "123456"}},
    )
    templateVersion = fields.Integer(
        strict=True, validate=ma.validate.Range(min=1, max=2**31 - 1),
        metadata={"description": "with `template`: the version to send (default: the latest); an unknown "
                                 "version is a 404", "example": 3},
    )

    @validates_schema
    def body_or_template(self, data: dict[str, Any], **_: Any) -> None:
        """Exactly one of `body` and `template`; the template's fields only with a template."""
        if "body" in data and "template" in data:
            raise ValidationError("give either body or template, not both", "template")
        named = [name for name in TEMPLATE_FIELDS[1:] if name in data]
        if named and "template" not in data:
            raise ValidationError(f"is required with {named[0]}", "template")
        if "body" not in data and "template" not in data:
            raise ValidationError("is required, or template and personalisation", "body")


_SEND_SCHEMA = SendRequestSchema()


class ReceiptSchema(ma.Schema):
    """Body of a 200 answer to POST /send: what the provider said, as strings."""

    dateEvent = fields.String(
        required=True, metadata={"description": "ISO 8601 UTC with milliseconds",
                                 "example": "2021-08-13T12:53:52.959Z"})
    numSegments = fields.String(
        required=True, metadata={"description": "SMS segments billed", "example": "1"})
    sid = fields.String(required=True, metadata={"description": "provider message id"})
    status = fields.String(required=True, metadata={"description": "provider status at acceptance",
                                                    "example": "queued"})


class ErrorSchema(ma.Schema):
    """Body of every 4xx and 5xx answer."""

    statusCode = fields.String(required=True, metadata={"example": "400"})
    error = fields.String(required=True, metadata={"example": "Bad Request"})
    message = fields.String(required=True,
                            metadata={"example": "receiver: not an E.164 phone number"})


class EstimateSchema(ma.Schema):
    """Body of a 200 answer to POST /estimate: what /send would send, as strings."""

    numSegments = fields.String(
        required=True, metadata={"description": "SMS segments the message would take (the service's own "
                                                "GSM-7/UCS-2 count; it is what the segment budget counts)",
                                 "example": "1"})
    encoding = fields.String(required=True, metadata={"description": "GSM-7 or UCS-2", "example": "GSM-7",
                                                      "enum": ["GSM-7", "UCS-2"]})
    country = fields.String(required=True, metadata={"description": "ISO 3166 alpha-2 code of the "
                                                      "destination, or unknown", "example": "US"})
    numberType = fields.String(required=True, metadata={"description": "phonenumbers type of the receiver "
                                                        "(MOBILE, FIXED_LINE_OR_MOBILE, ...)",
                                                        "example": "FIXED_LINE_OR_MOBILE"})
    provider = fields.String(required=True, metadata={"description": "provider the message would go to",
                                                      "example": "twilio"})

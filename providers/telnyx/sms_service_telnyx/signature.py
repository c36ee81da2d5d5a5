"""Telnyx webhook signatures: Ed25519 over ``"{telnyx-timestamp}|{raw body}"``, within 300 s.

Telnyx signs each webhook with its account key pair; the public key (base64, from the
Mission Control portal) verifies it. Telnyx's SDKs refuse a timestamp more than 300
seconds away from now, which bounds how long a captured webhook can be replayed. The
Ed25519 arithmetic is the `cryptography` package's, never written here.
"""

from __future__ import annotations

import base64
import binascii
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

TOLERANCE_S = 300
SIGNATURE_BYTES = 64
KEY_BYTES = 32


def load_public_key(text: str) -> Ed25519PublicKey:
    """Read a base64 Ed25519 public key (32 bytes); raises `ValueError` when it is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"an Ed25519 public key is {KEY_BYTES} bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def problem(key: Ed25519PublicKey, body: bytes, given: str | None, timestamp: str | None,
            now: float | None = None) -> str | None:
    """Why a webhook is not authentic (None when it is).

    `given` is the ``telnyx-signature-ed25519`` header (base64 of 64 bytes), `timestamp`
    the ``telnyx-timestamp`` header (Unix seconds).
    """
    if not given or not timestamp:
        return "telnyx-signature-ed25519 or telnyx-timestamp is missing"
    stamp = timestamp.strip()
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return "telnyx-timestamp is not a Unix time"
    if abs((time.time() if now is None else now) - int(stamp)) > TOLERANCE_S:
        return f"telnyx-timestamp is more than {TOLERANCE_S} s away"
    try:
        raw = base64.b64decode(given.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "telnyx-signature-ed25519 is not base64"
    if len(raw) != SIGNATURE_BYTES:
        return "telnyx-signature-ed25519 is not an Ed25519 signature"
    try:
        key.verify(raw, stamp.encode() + b"|" + body)
    except InvalidSignature:
        return "telnyx-signature-ed25519 does not match"
    return None

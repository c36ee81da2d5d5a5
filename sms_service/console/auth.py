"""The console's sign-in: admin keys, the signed session cookie, its server-side record, sign-out.

The cookie is Flask's signed session under a secret key kept once in STORAGE_URI, so
every worker and replica accepts it. It names a session whose record lives in the
storage as long as the session (12 h): signing out deletes the record, so the cookie,
even replayed, opens nothing afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from datetime import timedelta

from flask import Flask, current_app, session

from sms_service.exceptions import StorageUnavailable

log = logging.getLogger(__name__)

SESSION_LIFETIME = timedelta(hours=12)
# The Flask secret key's name in STORAGE_URI (Storage.secret_once): one per deployment.
SECRET_KEY_NAME = "console-session-key"  # noqa: S105  (the name it is kept under)
_RECORD_PREFIX = "console-session:"


def configure(app: Flask, storage, https: bool) -> None:
    """Set the session cookie's flags and, when the storage answers, the secret key.

    A storage that does not answer at start-up leaves the key to the first console
    request (`ensure_secret_key`).
    """
    app.config.update(
        SESSION_COOKIE_NAME="sms_console",
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=https,
        PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME,
        SESSION_REFRESH_EACH_REQUEST=False,
        WTF_CSRF_CHECK_DEFAULT=False,  # only the console's forms: the API takes no cookies
        WTF_CSRF_TIME_LIMIT=int(SESSION_LIFETIME.total_seconds()),
        WTF_CSRF_SSL_STRICT=https,
    )
    try:
        ensure_secret_key(app, storage)
    except StorageUnavailable:
        log.warning("the console's session key could not be read yet; the first console request will read it")


def ensure_secret_key(app: Flask, storage) -> None:
    """Read (or make, once for the deployment) the session signing key; raises `StorageUnavailable`."""
    if app.secret_key:
        return
    stored = storage.guarded(lambda: storage.secret_once(SECRET_KEY_NAME, secrets.token_hex(32)))
    app.secret_key = stored


def key_matches(given: str, keys: tuple[str, ...]) -> bool:
    """Tell whether `given` is one of the admin `keys`, comparing against every key in constant time."""
    given_bytes = given.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:  # every key, always: timing tells nothing about which matched
        matched |= hmac.compare_digest(given_bytes, key.encode())
    return matched and bool(given)


def sign_in(storage) -> None:
    """Start a new session (a fresh id, so a session planted before sign-in is worth nothing).

    Raises `StorageUnavailable`.
    """
    session.clear()
    session_id = secrets.token_urlsafe(32)
    expires_ms = int((time.time() + SESSION_LIFETIME.total_seconds()) * 1000)
    ttl_ms = int(SESSION_LIFETIME.total_seconds() * 1000)
    storage.guarded(lambda: storage.record_reserve(_record_key(session_id), str(expires_ms), ttl_ms))
    session.permanent = True
    session["sid"] = session_id
    session["exp"] = expires_ms


def signed_in(storage) -> bool:
    """Tell whether the request's cookie names a live session; raises `StorageUnavailable`."""
    session_id, expires_ms = session.get("sid"), session.get("exp")
    if not isinstance(session_id, str) or not isinstance(expires_ms, int):
        return False
    left_ms = expires_ms - int(time.time() * 1000)
    if left_ms <= 0:
        return False
    value = str(expires_ms)
    # A swap with itself: true only while the record is there (signing out deletes it),
    # and it keeps the record's end where it was.
    return storage.guarded(lambda: storage.record_swap(_record_key(session_id), value, value, left_ms))


def sign_out(storage) -> None:
    """End the session: its record is deleted, so the cookie is refused even if replayed."""
    session_id, expires_ms = session.get("sid"), session.get("exp")
    if isinstance(session_id, str) and isinstance(expires_ms, int):
        storage.guarded(lambda: storage.record_delete(_record_key(session_id), str(expires_ms)))
    session.clear()


def forget(cookie_session) -> None:
    """Drop a dead session's id from the cookie."""
    cookie_session.pop("sid", None)
    cookie_session.pop("exp", None)


def _record_key(session_id: str) -> str:
    # Only a hash of the id is stored: reading the storage gives no cookie.
    return _RECORD_PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


def storage_of_app():
    """The storage of the running app."""
    return current_app.extensions["sms_service"].storage

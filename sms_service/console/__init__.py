"""The operator console (SPEC section 20): server-rendered pages under /console/, for admin keys."""

from __future__ import annotations

from flask import Flask, Response, request
from flask_wtf.csrf import CSRFError, CSRFProtect

from sms_service import errors
from sms_service.console import (
    auth,
    templates_page,  # noqa: F401  (its routes join views.bp)
    views,
)

PREFIX = "/console"
# No inline script or style anywhere: htmx's own indicator style is turned off in the
# page's htmx-config, and every style is in console.css.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


def init_app(app: Flask, services) -> None:
    """Serve the console on `app` (only called when ADMIN_API_KEYS is set)."""
    settings = services.settings
    https = (settings.public_base_url or "").lower().startswith("https://")
    auth.configure(app, services.storage, https)
    CSRFProtect(app)
    app.register_blueprint(views.bp)
    errors.render_html_under(app, PREFIX, views.error_page)

    @app.errorhandler(CSRFError)
    def csrf_refused(error: CSRFError) -> Response:
        return views.error_page(400, f"the form was refused: {error.description.lower()} "
                                     "(reload the page and send it again)")

    @app.after_request
    def console_headers(response: Response) -> Response:
        if _under(request.path):
            response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
            response.headers["X-Content-Type-Options"] = "nosniff"
            # Same-origin only: flask-wtf checks the Referer of a form posted over https.
            response.headers["Referrer-Policy"] = "same-origin"
            if not request.path.startswith(f"{PREFIX}/static/"):
                response.headers["Cache-Control"] = "no-store"
        return response


def _under(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")

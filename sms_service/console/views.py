"""The console's pages: sign-in and sign-out, overview, messages, opt-outs (templates: templates_page)."""

from __future__ import annotations

import csv
import io
import logging
import time
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from sms_service import phone
from sms_service.console import auth, overview
from sms_service.exceptions import StorageUnavailable
from sms_service.status.listing import DEFAULT_LIMIT
from sms_service.status.schemas import LISTED_STATUSES as STATUSES
from sms_service.status.service import public_view
from sms_service.suppression import csvio
from sms_service.suppression.service import ADMIN, iso_time

log = logging.getLogger(__name__)

bp = Blueprint("console", __name__, url_prefix="/console",
               template_folder="templates", static_folder="static")

PUBLIC_VIEWS = {"console.sign_in", "console.static"}
MAX_IMPORT_BYTES = 2 * 1024 * 1024
_providers_cache = overview.ProvidersCache()


def _services() -> Any:
    return current_app.extensions["sms_service"]


@bp.before_request
def require_session() -> Response | None:
    """Every page but sign-in needs a live session; every form post its CSRF token."""
    services = _services()
    auth.ensure_secret_key(current_app, services.storage)
    if request.endpoint == "console.opt_out_import":
        # The app's 16 KiB limit is the API's; a list's CSV is larger (read before the token is).
        request.max_content_length = MAX_IMPORT_BYTES + 64 * 1024
    if request.method == "POST":
        current_app.extensions["csrf"].protect()
    if request.endpoint in PUBLIC_VIEWS:
        return None
    if not auth.signed_in(services.storage):
        auth.forget(session)  # its CSRF token stays: a sign-in form open elsewhere still works
        return redirect(url_for("console.sign_in"))
    return None


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Response | str:
    """Ask for an admin key; a right one starts a session."""
    services = _services()
    if request.method == "POST":
        given = request.form.get("key", "").strip()
        if auth.key_matches(given, services.settings.admin_api_keys):
            auth.sign_in(services.storage)
            log.info("console sign-in")
            return redirect(url_for("console.overview"))
        # The key is never logged, nor its length: only that one was refused.
        log.warning("console sign-in refused: not an admin key",
                    extra={"remote_addr": request.remote_addr})
        return render_template("console/sign_in.html", refused=True), 401
    return render_template("console/sign_in.html", refused=False)


@bp.route("/sign-out", methods=["POST"])
def sign_out() -> Response:
    """End the session (its record deleted, so the cookie is refused from now on)."""
    auth.sign_out(_services().storage)
    flash("Signed out.")
    return redirect(url_for("console.sign_in"))


@bp.route("/", endpoint="overview")
def overview_page() -> str:
    """The last 24 hours: sends, failures, countries and budgets, providers, webhooks, opt-outs."""
    figures = overview.figures(_services(), _providers_cache)
    return render_template("console/overview.html", f=figures, page="overview",
                           read_at=iso_time(int(figures["providers_read_at"] * 1000)))


# -- messages ---------------------------------------------------------------------------


@bp.route("/messages")
def messages() -> tuple[str, int]:
    """The listing across every API key, filtered, newest first, a page at a time."""
    services = _services()
    form, filters, errors = _message_filters(request.args)
    rows: list[dict[str, Any]] = []
    following = None
    if not errors:
        try:
            rows, following = _list(services, filters, form.get("cursor") or None)
        except ValueError:
            errors.append("cursor: not a cursor of this listing")
    partial = bool(request.headers.get("HX-Request"))  # htmx swaps only the table (not a 4xx)
    page = render_template("console/_messages_table.html" if partial else "console/messages.html",
                           page="messages", form=form, rows=rows, following=following, errors=errors,
                           statuses=STATUSES, providers=[route.name for route in services.failover.routes])
    return page, 400 if errors and not partial else 200


def _message_filters(args: Any) -> tuple[dict[str, str], dict[str, Any], list[str]]:
    form = {name: (args.get(name) or "").strip()
            for name in ("status", "provider", "template", "since", "until", "receiver", "cursor")}
    filters: dict[str, Any] = {}
    errors = []
    if form["status"]:
        if form["status"] in STATUSES:
            filters["status"] = form["status"]
        else:
            errors.append("status: not a status")
    for name in ("provider", "template"):
        if form[name]:
            filters[name] = form[name][:100]
    for name, key in (("since", "since_ms"), ("until", "until_ms")):
        if form[name]:
            at = _parse_time(form[name])
            if at is None:
                errors.append(f"{name}: not a time (2026-12-07T09:00 or 2026-12-07T09:00:00Z, UTC)")
            else:
                filters[key] = at
    if form["receiver"]:
        if phone.is_e164(form["receiver"]):
            filters["receiver"] = form["receiver"]
        else:
            errors.append("number: not a full E.164 number (+14155550123)")
    return form, filters, errors


def _parse_time(text: str) -> float | None:
    import datetime as dt

    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp() * 1000


def _list(services: Any, filters: dict[str, Any],
          cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    storage = services.storage
    receiver = filters.pop("receiver", None)
    if receiver is not None:
        receivers = services.status.receivers
        if receivers is None:
            return [], None
        filters["receiver_hash"] = receivers.hash(receiver)
    records, following = storage.guarded(
        lambda: storage.message_list(None, limit=DEFAULT_LIMIT, cursor=cursor, **filters))
    rows = []
    for record in records:
        row = public_view(record, webhooks=False)
        row["key"] = _key_label(record.get("owner"))
        rows.append(row)
    return rows, following


def _key_label(owner: Any) -> str:
    # The key's identity (a hash of it), shortened: which caller sent it, never the key.
    return f"key {owner[:8]}" if isinstance(owner, str) and owner else "no key"


@bp.route("/messages/<sid>")
def message(sid: str) -> str:
    """One message's record and its history."""
    services = _services()
    record = None
    for route in services.failover.routes:
        if route.status is not None and (record := route.status.read(sid, None)) is not None:
            break
    if record is None:
        abort(404, description="no such message (or it expired)")
    return render_template("console/message.html", page="messages", m=record)


# -- opt-outs ---------------------------------------------------------------------------


@bp.route("/opt-outs")
def opt_outs() -> str:
    """Look a number up on the suppression list; import and export the list."""
    number = (request.args.get("number") or "").strip()
    return _opt_outs_page(number)


def _opt_outs_page(number: str, status: int = 200) -> tuple[str, int]:
    services = _services()
    entry = None
    error = None
    if number:
        if phone.is_e164(number) and phone.is_possible(number):
            entry = services.suppression.entry(number)
        else:
            error = "not a full E.164 number (+14155550123)"
            status = 400
    count = overview._suppressed(services.storage)
    return render_template("console/opt_outs.html", page="opt-outs", number=number, entry=entry,
                           error=error, count=count), status


@bp.route("/opt-outs/add", methods=["POST"])
def opt_out_add() -> Response | tuple[str, int]:
    """Put the typed number on the suppression list."""
    number = (request.form.get("number") or "").strip()
    if not (phone.is_e164(number) and phone.is_possible(number)):
        return _opt_outs_page(number, 400)
    added = _services().suppression.add(number, ADMIN)
    flash("Added to the list." if added else "Already on the list.")
    return redirect(url_for("console.opt_outs", number=number))


@bp.route("/opt-outs/remove", methods=["POST"])
def opt_out_remove() -> Response | tuple[str, int]:
    """Take the typed number off the suppression list."""
    number = (request.form.get("number") or "").strip()
    if not (phone.is_e164(number) and phone.is_possible(number)):
        return _opt_outs_page(number, 400)
    removed = _services().suppression.remove(number, ADMIN)
    flash("Removed from the list." if removed else "It was not on the list.")
    return redirect(url_for("console.opt_outs", number=number))


@bp.route("/opt-outs/import", methods=["POST"])
def opt_out_import() -> Response | tuple[str, int]:
    """Add the numbers of an uploaded CSV (a `number` column, `source` optional)."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a CSV file to import.")
        return redirect(url_for("console.opt_outs"))
    data = upload.stream.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        flash("The file is larger than 2 MiB: split it, or use `sms-service suppressions import`.")
        return redirect(url_for("console.opt_outs"))
    try:
        text = data.decode("utf-8-sig")
        added, kept, bad = csvio.import_csv(_services().storage, io.StringIO(text, newline=""))
    except (UnicodeDecodeError, ValueError, csv.Error) as exc:
        reason = "the file is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
        flash(f"Nothing imported: {reason}.")
        return redirect(url_for("console.opt_outs"))
    message = f"Imported {added} numbers ({kept} already on the list)."
    if bad:
        lines = ", ".join(map(str, bad[:csvio.MAX_BAD_LINES_SHOWN]))
        message += f" {len(bad)} rows skipped, not an E.164 number: lines {lines}."
    flash(message)
    return redirect(url_for("console.opt_outs"))


@bp.route("/opt-outs/export.csv")
def opt_out_export() -> Response:
    """The whole list as CSV (number,source,since): the audit file, with full numbers."""
    out = io.StringIO()
    count = csvio.export_csv(_services().storage, out)
    log.info("console exported the suppression list", extra={"count": count})
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="suppressions-{stamp}.csv"',
        "Cache-Control": "no-store",
    })


# -- refusals, as pages -----------------------------------------------------------------


def error_page(status: int, message: str) -> Response:
    """A refusal of the console as an HTML page (the API's errors stay JSON)."""
    body = render_template("console/error.html", status=status, message=message)
    return Response(body, status=status, mimetype="text/html")




@bp.errorhandler(StorageUnavailable)
def storage_unavailable(exc: StorageUnavailable) -> Response:
    """The storage did not answer: a 503 page (the API's text speaks of sends)."""
    log.error("console page without its storage", extra={"reason": exc.message[:200]})
    return error_page(503, "the storage does not answer (STORAGE_URI); try again in a moment")

"""The `console` provider: sends nothing, logs a masked line, returns a receipt.

The embedded default of a local run (``make run``); never for production. With
``PUBLIC_BASE_URL`` set it also plays the network's part: it reports each message
``sent`` then ``delivered`` to the service's own callback route, so the record goes
through the same update path as a real provider's.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Mapping

import requests

from sms_service.phone import mask_number
from sms_service.provider import CallbackRequest, InboundMessage, Message, Provider, Receipt, StatusUpdate

log = logging.getLogger(__name__)

REPORT_DELAY_S = 0.2
REPORT_TIMEOUT_S = 5.0
STATUSES = ("sent", "delivered")


class ConsoleProvider(Provider):
    """Pretends to send: for local runs and demos only."""

    PLUGIN_API = (1, 3)
    # It cannot sign: its reports carry the URL's token, like Kaleyra's.
    callbacks_signed = False

    def __init__(self, env: Mapping[str, str], *, timeout: float, callback_url: str | None = None) -> None:
        super().__init__(env, timeout=timeout, callback_url=callback_url)
        log.warning("console provider in use: no SMS will be sent; never use it in production")

    def send(self, message: Message) -> Receipt:
        """Log the message (masked, without its body) and return a made-up receipt."""
        sid = "CO" + uuid.uuid4().hex
        log.info(
            "console provider: message not sent",
            extra={"sid": sid, "receiver": mask_number(message.receiver),
                   "segments": message.num_segments},
        )
        if message.status_callback:
            threading.Thread(target=_report, args=(message.status_callback, sid), daemon=True,
                             name="console-status").start()
        return Receipt(sid=sid, status="queued", date_event=dt.datetime.now(dt.UTC))

    def parse_status_callback(self, request: CallbackRequest) -> list[StatusUpdate]:
        """Read its own reports: ``{"sid": ..., "status": "sent" | "delivered"}``.

        Raises `ValueError` for anything else.
        """
        data = request.json if isinstance(request.json, dict) else {}
        if not isinstance(data.get("sid"), str) or data.get("status") not in STATUSES:
            raise ValueError("a console report is {sid, status}")
        return [StatusUpdate(sid=data["sid"], status=data["status"], provider_status=data["status"])]

    def parse_inbound(self, request: CallbackRequest) -> list[InboundMessage]:
        """Take a reply for local trials: JSON ``{"from": "+1...", "body": "STOP"}``, or form fields.

        The URL's token was checked already. Raises `ValueError` without a sender.
        """
        sender = request.value("from", "From")
        if not sender:
            raise ValueError("a console inbound message is {from, body}")
        return [InboundMessage(sender=sender.strip(), body=request.value("body", "Body") or "")]


def _report(url: str, sid: str) -> None:
    # After the answer has had time to go out, as a real network would; an unreachable
    # PUBLIC_BASE_URL costs a warning, never the send.
    for status in STATUSES:
        time.sleep(REPORT_DELAY_S)
        try:
            requests.post(url, json={"sid": sid, "status": status}, timeout=REPORT_TIMEOUT_S)
        except requests.RequestException as exc:
            log.warning("console provider could not report a status to PUBLIC_BASE_URL",
                        extra={"sid": sid, "error_class": type(exc).__name__})
            return

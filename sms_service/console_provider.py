"""The `console` provider: sends nothing, logs a masked line, returns a receipt.

The embedded default of a local run (``make run``); never for production.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Mapping

from sms_service.phone import mask_number
from sms_service.provider import Message, Provider, Receipt

log = logging.getLogger(__name__)


class ConsoleProvider(Provider):
    """Pretends to send: for local runs and demos only."""

    def __init__(self, env: Mapping[str, str], *, timeout: float) -> None:
        super().__init__(env, timeout=timeout)
        log.warning("console provider in use: no SMS will be sent; never use it in production")

    def send(self, message: Message) -> Receipt:
        """Log the message (masked, without its body) and return a made-up receipt."""
        sid = "CO" + uuid.uuid4().hex
        log.info(
            "console provider: message not sent",
            extra={"sid": sid, "receiver": mask_number(message.receiver),
                   "segments": message.num_segments},
        )
        return Receipt(sid=sid, status="queued", date_event=dt.datetime.now(dt.UTC))

"""The suppression list: who opted out, from where and since when; knows nothing of Flask.

Numbers are stored in the canonical E.164 form phonenumbers gives them, not hashed (the
list is compliance data that must be exported for audits), and leave this module only
masked: in logs, metrics and answers.
"""

from __future__ import annotations

import datetime as dt
import logging

from sms_service import metrics, phone
from sms_service.exceptions import StorageUnavailable
from sms_service.provider import InboundMessage
from sms_service.storage import Storage
from sms_service.suppression import keywords

log = logging.getLogger(__name__)

INBOUND = "inbound"
PROVIDER = "provider"
ADMIN = "admin"
SOURCES = (INBOUND, PROVIDER, ADMIN)


class SuppressionList:
    """The deployment's suppression list, in the shared storage."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def is_suppressed(self, number: str) -> bool:
        """Tell whether `number` opted out: one key read. Raises `StorageUnavailable`."""
        canonical = phone.canonical(number)
        return self.storage.guarded(lambda: self.storage.suppression_get(canonical)) is not None

    def add(self, number: str, source: str) -> bool:
        """Put `number` on the list; tell whether it was new. Raises `StorageUnavailable`."""
        canonical = phone.canonical(number)
        added = self.storage.guarded(lambda: self.storage.suppression_add(canonical, source))
        if added:
            metrics.SUPPRESSIONS_ADDED.labels(source).inc()
        log.info("number suppressed" if added else "number already suppressed",
                 extra={"receiver": phone.mask_number(canonical), "source": source})
        return added

    def remove(self, number: str, source: str) -> bool:
        """Take `number` off the list (`source`: who asked); tell whether it was on it.

        Raises `StorageUnavailable`.
        """
        canonical = phone.canonical(number)
        removed = self.storage.guarded(lambda: self.storage.suppression_remove(canonical))
        if removed:
            metrics.SUPPRESSIONS_REMOVED.labels(source).inc()
            log.info("number unsuppressed",
                     extra={"receiver": phone.mask_number(canonical), "source": source})
        return removed

    def entry(self, number: str) -> dict[str, str] | None:
        """The masked public entry of `number`: ``{number, source, since}``, or None.

        Raises `StorageUnavailable`.
        """
        canonical = phone.canonical(number)
        found = self.storage.guarded(lambda: self.storage.suppression_get(canonical))
        if found is None:
            return None
        source, since = found
        return {"number": phone.mask_number(canonical), "source": source, "since": iso_time(since)}

    def learn(self, number: str | None, what: str) -> None:
        """Add a number a provider says opted out; never raises (the send has its own answer).

        `what` names the evidence for the log line (``21610``, ``OPT-OUT``).
        """
        if not number or not phone.is_e164(number):
            log.warning("a provider reported an opt-out without a usable number", extra={"reason": what})
            return
        try:
            self.add(number, PROVIDER)
        except StorageUnavailable:
            log.error("could not store an opt-out reported by the provider",
                      extra={"receiver": phone.mask_number(number), "reason": what})

    def apply_inbound(self, message: InboundMessage) -> str | None:
        """Apply one reply: STOP words add its sender, START words remove it.

        Returns the action (``stop``, ``start``) or None. Raises `StorageUnavailable`.
        """
        if not isinstance(message, InboundMessage):
            raise ValueError("an inbound parser returned something other than InboundMessage values")
        action = keywords.classify(message.body, message.opt_out_type)
        sender = message.sender if isinstance(message.sender, str) and phone.is_e164(message.sender) else None
        log.info("inbound message", extra={
            "receiver": phone.mask_number(sender) if sender else "***", "action": action or "none"})
        if action is None or sender is None:
            return None
        if action == keywords.STOP:
            self.add(sender, INBOUND)
        else:
            self.remove(sender, INBOUND)
        return action


def iso_time(ms: int) -> str:
    """Unix milliseconds as the API writes times: ISO 8601, UTC, milliseconds, ``Z``."""
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"

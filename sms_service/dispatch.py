"""The send pipeline: guards after validation, then the provider, then the receipt."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from sms_service import metrics, phone
from sms_service.exceptions import ProviderError, ReceiverUnsubscribed
from sms_service.guards import Guards
from sms_service.phone import mask_number
from sms_service.provider import Message, Provider, Receipt
from sms_service.segments import count_segments
from sms_service.status.service import StatusService

log = logging.getLogger(__name__)


class Dispatcher:
    """Sends one validated message through the guards and the provider."""

    def __init__(self, provider_name: str, provider: Provider, guards: Guards,
                 status: StatusService | None = None) -> None:
        self.provider_name = provider_name
        self.provider = provider
        self.guards = guards
        self.status = status
        # Given with every message when the plugin takes status callbacks.
        self.callback_url = getattr(provider, "callback_url", None) if provider.supports_status() else None
        # Label children bound once: looking them up costs a lock and a dict per call.
        self._accepted = metrics.MESSAGES_ACCEPTED.labels(provider_name)
        self._segments = {enc: metrics.SEGMENTS.labels(provider_name, enc) for enc in ("GSM-7", "UCS-2")}
        self._durations: dict[str, Any] = {}

    def send(self, sender: str, receiver: str, body: str,
             owner: str = "") -> tuple[dict[str, str], dict[str, Any]]:
        """Send a message; return the receipt as the API's four strings, and log fields.

        The log fields (provider, masked receiver, segments, status, duration) go on the
        request's access-log line. The message's record is stored (for `owner`, the
        caller's key identity) before this returns. Raises a `GuardRejection`,
        `StorageUnavailable` or `ProviderError`.
        """
        segments = count_segments(body)
        self.guards.admit(receiver, segments.count)
        message = Message(sender=sender, receiver=receiver, body=body,
                          num_segments=segments.count, encoding=segments.encoding,
                          status_callback=self.callback_url)
        started = time.perf_counter()
        try:
            receipt = self.provider.send(message)
        except ProviderError as exc:
            self._observe(exc.reason, started)
            if isinstance(exc, ReceiverUnsubscribed):
                # The provider knows of an opt-out we missed: no other provider may send either.
                self.guards.suppression.learn(receiver, str(exc.provider_code or "provider"))
            raise
        except Exception:
            self._observe("plugin_error", started)
            raise
        elapsed = self._observe("accepted", started)
        answer = receipt_fields(receipt, segments.count)
        if self.status is not None:
            self.status.record_send(answer, receiver, segments.encoding, owner)
        self._accepted.inc()
        self._segments[segments.encoding].inc(int(answer["numSegments"]))
        fields = {
            "provider": self.provider_name, "receiver": mask_number(receiver),
            "segments": int(answer["numSegments"]), "encoding": segments.encoding,
            "sms_status": answer["status"], "sid": answer["sid"],
            "provider_ms": round(elapsed * 1000, 1),
        }
        log.debug("message accepted by provider", extra=fields)
        return answer, fields

    def estimate(self, receiver: str, body: str) -> dict[str, str]:
        """What `send` would do now, without sending or consuming anything: the same guards
        in check mode, then what the message would be.

        Returns the estimate as the API's five strings. Raises what `send` would raise
        before its provider call: a `GuardRejection` or `StorageUnavailable`.
        """
        segments = count_segments(body)
        self.guards.admit(receiver, segments.count, consume=False)
        return {
            "numSegments": str(segments.count),
            "encoding": segments.encoding,
            "country": phone.region_of(receiver) or "unknown",
            "numberType": phone.type_of(receiver),
            "provider": self.provider_name,
        }

    def _observe(self, outcome: str, started: float) -> float:
        elapsed = time.perf_counter() - started
        child = self._durations.get(outcome)
        if child is None:
            child = self._durations[outcome] = metrics.PROVIDER_DURATION.labels(self.provider_name, outcome)
        child.observe(elapsed)
        return elapsed


def receipt_fields(receipt: Receipt, local_segments: int) -> dict[str, Any]:
    """Turn a plugin's receipt into the API's fields, tolerating a sloppy plugin."""
    if not isinstance(receipt, Receipt) or not receipt.sid:
        raise TypeError("provider plugin returned no Receipt with a sid")
    when = receipt.date_event
    if when.tzinfo is None:  # a plugin's naive datetime is taken as UTC
        when = when.replace(tzinfo=dt.UTC)
    when = when.astimezone(dt.UTC)
    segments = receipt.num_segments if receipt.num_segments and receipt.num_segments > 0 else local_segments
    return {
        "dateEvent": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "numSegments": str(segments),
        "sid": str(receipt.sid),
        "status": str(receipt.status or "queued"),
    }

"""The send pipeline: guards after validation, then the provider, then the receipt."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from sms_service import phone
from sms_service.exceptions import ReceiverUnsubscribed, proves_nothing_sent
from sms_service.failover import Failover, Route
from sms_service.guards import Guards
from sms_service.phone import mask_number
from sms_service.provider import Message, Provider, Receipt
from sms_service.segments import count_segments
from sms_service.status.service import StatusService

if TYPE_CHECKING:
    from sms_service.templates.service import Rendered

log = logging.getLogger(__name__)


class Dispatcher:
    """Sends one validated message through the guards and the providers, in failover order."""

    def __init__(self, provider_name: str, provider: Provider, guards: Guards,
                 status: StatusService | None = None, failover: Failover | None = None) -> None:
        self.guards = guards
        # One provider and no failover given: the route of that provider alone.
        self.failover = failover or Failover([Route(provider_name, provider, guards.settings.balance_check,
                                                    status)])
        first = self.failover.routes[0]
        self.provider_name, self.provider, self.status = first.name, first.provider, first.status

    def send(self, sender: str, receiver: str, body: str, owner: str = "",
             template: Rendered | None = None) -> tuple[dict[str, str], dict[str, Any]]:
        """Send a message; return the receipt as the API's four strings, and log fields.

        With `template`, `body` is its rendered text: each provider gets the template's
        ids for it, and the record and the log line name the template and its version
        (never the text).

        The log fields (provider that sent, masked receiver, segments, status, duration)
        go on the request's access-log line. The message's record is stored (for
        `owner`, the caller's key identity) under the provider that sent it before this
        returns. Raises a `GuardRejection`, `StorageUnavailable` or `ProviderError`.
        """
        # The number the guards judge is the number the plugin gets (the plugin API says
        # canonical E.164): "+4407911123456" is sent as "+447911123456".
        receiver = phone.canonical(receiver)
        segments = count_segments(body)
        # Guards once per request, whatever the number of providers tried; then the
        # providers in failover order, each with its own balance check and circuit.
        spend, first_circuit = self.guards.admit_send(receiver, segments.count,
                                                      self.failover.routes[0].circuit)
        message = Message(sender=sender, receiver=receiver, body=body,
                          num_segments=segments.count, encoding=segments.encoding,
                          status_callback=self.failover.routes[0].callback_url)
        provider_ids = None
        if template is not None:  # (a plain body, the hot path, skips this)
            provider_ids = template.provider_ids
            ids = provider_ids.get(self.failover.routes[0].name)
            if ids:
                message = dataclasses.replace(message, template_ids=dict(ids))
        try:
            route, receipt, elapsed = self.failover.send(message, provider_ids, first_circuit)
        except BaseException as exc:
            if spend is not None and proves_nothing_sent(exc):
                # No SMS went: an outage must not drain the country's budget. (The delay
                # stays counted: it answers probing, whatever the provider said.)
                self.guards.budgets.refund(spend)
            if isinstance(exc, ReceiverUnsubscribed):
                # The provider knows of an opt-out we missed: no other provider may send either.
                self.guards.suppression.learn(receiver, str(exc.provider_code or "provider"))
            raise
        answer = receipt_fields(receipt, segments.count)
        used = {"name": template.name, "version": template.version} if template is not None else None
        if route.status is not None:
            route.status.record_send(answer, receiver, segments.encoding, owner, used,
                                     price=(receipt.price, receipt.price_unit))
        route.accepted.inc()
        route.segments[segments.encoding].inc(int(answer["numSegments"]))
        fields = {
            "provider": route.name, "receiver": mask_number(receiver),
            "segments": int(answer["numSegments"]), "encoding": segments.encoding,
            "sms_status": answer["status"], "sid": answer["sid"],
            "provider_ms": round(elapsed * 1000, 1),
        }
        if route is not self.failover.routes[0]:
            fields["failover_from"] = self.failover.routes[0].name
        if template is not None:
            fields.update(template=template.name, template_version=template.version)
        log.debug("message accepted by provider", extra=fields)
        return answer, fields

    def estimate(self, receiver: str, body: str) -> dict[str, str]:
        """What `send` would do now, without sending or consuming anything: the same guards
        in check mode, the provider that would be tried first, then what the message would be.

        Returns the estimate as the API's five strings. Raises what `send` would raise
        before a provider's send call: a `GuardRejection`, `StorageUnavailable`, or the
        failure of every provider when none is usable (circuits open, balances empty).
        """
        receiver = phone.canonical(receiver)
        segments = count_segments(body)
        self.guards.admit(receiver, segments.count, consume=False)
        route = self.failover.first_usable()
        return {
            "numSegments": str(segments.count),
            "encoding": segments.encoding,
            "country": phone.region_of(receiver) or "unknown",
            "numberType": phone.type_of(receiver),
            "provider": route.name,
        }


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

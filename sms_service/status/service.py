"""Message records: stored at each accepted send, moved by provider callbacks, read back.

Knows nothing of Flask: the routes hand it plain values. Records hold the masked
receiver and its country, never the body or the full number.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from typing import TYPE_CHECKING, Any

from sms_service import metrics, phone
from sms_service.exceptions import CallbackRefused, StorageUnavailable
from sms_service.provider import Provider, StatusUpdate
from sms_service.status import events, listing, model
from sms_service.status.callbacks import TOKEN_PARAMETER, callback_token, status_url
from sms_service.storage import Storage

if TYPE_CHECKING:
    from sms_service.status.deliverer import Deliverer

log = logging.getLogger(__name__)

MAX_SID_CHARS = 128
MAX_WORD_CHARS = 64
# Fields of a record a caller may read, in the order of the answer.
PUBLIC_FIELDS = ("sid", "provider", "receiver", "country", "numSegments", "encoding", "dateEvent",
                 "status", "providerStatus", "errorCode", "updatedAt", "price", "priceUnit", "history",
                 "template")


def public_view(record: dict[str, Any], webhooks: bool) -> dict[str, Any]:
    """The fields of a record a caller may read (GET /messages, webhook events), in answer order.

    With status webhooks on, also ``webhookFailures``: the events that ran out of retries.
    """
    view = {name: record.get(name) for name in PUBLIC_FIELDS}
    if webhooks:
        view["webhookFailures"] = record.get("webhookFailures") or []
    return view


class StatusService:
    """The message records of one worker's provider, in the shared storage."""

    # Set by the app when STATUS_WEBHOOK_URL is: each status change then also enqueues an event.
    webhooks: Deliverer | None = None
    # Set by the app: records keep the keyed hash of their receiver, for GET /messages?receiver=.
    receivers: listing.ReceiverKey | None = None
    # Set by the app (SPEC section 18): how long after its send the reconciler first looks
    # at a record (None: records carry no check time).
    first_check_ms: float | None = None

    def __init__(self, provider_name: str, provider: Provider, storage: Storage, ttl_s: float,
                 public_base_url: str | None, callback_secret: str | None) -> None:
        self.provider_name = provider_name
        self.provider = provider
        self.storage = storage
        self.ttl_ms = math.ceil(ttl_s * 1000)
        # Callbacks are on when the plugin was given a URL (PUBLIC_BASE_URL and support).
        self.enabled = getattr(provider, "callback_url", None) is not None and provider.supports_status()
        self.public_url = status_url(public_base_url or "", provider_name)
        self._token = (
            None if provider.callbacks_signed or not callback_secret
            else callback_token(callback_secret, provider_name).encode()
        )

    # -- the send's record (hot path) ----------------------------------------------------

    def record_send(self, answer: dict[str, str], receiver: str, encoding: str, owner: str,
                    template: dict[str, Any] | None = None,
                    price: tuple[str | None, str | None] = (None, None)) -> None:
        """Store the record of an accepted send before its answer goes out.

        `template` is ``{name, version}`` of the template the message was rendered from,
        or None: never its text. `price` is the send answer's price and currency, as the
        plugin gave them (either may be None); a readable one goes on the record and into
        the spend counter.

        Never raises for the storage: the SMS has gone, and an error now would invite a
        second one. A record that could not be stored is logged at ERROR.
        """
        at = answer["dateEvent"]
        record = {
            "sid": answer["sid"], "provider": self.provider_name, "receiver": phone.mask_number(receiver),
            "country": phone.region_of(receiver), "numSegments": answer["numSegments"], "encoding": encoding,
            "dateEvent": at, "status": "queued", "providerStatus": answer["status"], "errorCode": None,
            "updatedAt": at, "owner": owner,
            "history": [model.entry("queued", answer["status"], None, at)],
            "template": template,
        }
        if self.first_check_ms is not None:
            record["checkAt"] = math.floor(time.time() * 1000 + self.first_check_ms)  # whole ms
        priced = model.clean_price(*price)
        if priced is not None:
            record["price"], record["priceUnit"] = priced
        if self.receivers is not None:
            try:
                record["receiverHash"] = self.receivers.hash(receiver)
            except StorageUnavailable:
                pass  # the record is stored below, or not at all: only its receiver filter is lost
        # A callback that came first makes its event when it is merged here.
        event_id = events.new_event_id() if self.webhooks is not None else None
        try:
            key = self._key(answer["sid"])
            merged = self.storage.guarded(
                lambda: self.storage.message_create(key, record, self.ttl_ms, event_id))
        except StorageUnavailable:
            log.error("could not store the message record; its status will show only once a callback comes",
                      extra={"sid": answer["sid"], "provider": self.provider_name})
            return
        if priced is not None:
            metrics.count_spend(self.provider_name, record["country"], priced[1], priced[0])
        if merged and event_id is not None:
            # The merge may have enqueued an event: deliver it now, not at the next poll.
            self.webhooks.wake()

    # -- callbacks -----------------------------------------------------------------------

    def check_token(self, query: dict[str, str]) -> None:
        """For a provider that cannot sign, check the URL's token in constant time.

        Raises `CallbackRefused` when it is missing or wrong.
        """
        if self.provider.callbacks_signed:
            return
        given = (query.get(TOKEN_PARAMETER) or "").encode("utf-8", "surrogateescape")
        if self._token is None or not hmac.compare_digest(given, self._token):
            raise CallbackRefused("the callback URL's token is missing or wrong")

    def apply(self, update: StatusUpdate, at: str | None = None,
              source: str | None = None) -> tuple[str | None, dict[str, Any]]:
        """Apply one status update to its record (or keep it as an orphan); log and count it.

        A price it brings goes on a record that has none, and into the spend counter
        (once per message, whichever report brings it first). `source` marks the history
        entry (``lookup`` for the reconciler's). Raises `ValueError` for an update a
        plugin should not have made, and `StorageUnavailable`.
        """
        sid, status = _checked(update)
        provider_status = _word(update.provider_status, "provider_status") or status
        error_code = _word(update.error_code, "error_code")
        new = model.entry(status, provider_status, error_code, at or model.timestamp())
        if source is not None:
            new["source"] = source
        receiver = update.receiver if update.receiver and phone.is_e164(update.receiver) else None
        orphan = {"sid": sid, "provider": self.provider_name,
                  "receiver": phone.mask_number(receiver) if receiver else None,
                  "country": phone.region_of(receiver) if receiver else None}
        # The status change and its webhook event are stored in one atomic step, before the
        # provider hears 200: neither can be kept without the other.
        event_id = events.new_event_id() if self.webhooks is not None else None
        before, record = self.storage.guarded(
            lambda: self.storage.message_update(self._key(sid), new, orphan, self.ttl_ms, event_id))
        if event_id is not None and events.makes_event(before, record):
            self.webhooks.wake()
        after = record.get("status")
        if after != before:
            metrics.count_delivery_status(self.provider_name, after, record.get("country"))
        priced = model.clean_price(update.price, update.price_unit)
        if priced is not None and not record.get("orphan"):
            self._price(sid, *priced)
        log.info("delivery status", extra={
            "provider": self.provider_name, "sid": sid,
            "receiver": record.get("receiver") or orphan["receiver"],
            "old_status": before, "new_status": after, "provider_status": provider_status,
            "error_code": error_code, "orphan": bool(record.get("orphan")),
        })
        return before, record

    def mark_unknown(self, key: str, record: dict[str, Any]) -> None:
        """Give a record no final report reached in time the final status ``unknown``, with its event.

        The provider's last word stays as it was. Raises `StorageUnavailable`.
        """
        new = model.entry(model.UNKNOWN, str(record.get("providerStatus") or model.UNKNOWN),
                          record.get("errorCode"), model.timestamp())
        new["source"] = "final_after"
        orphan = {"sid": record.get("sid"), "provider": record.get("provider"), "receiver": None,
                  "country": None}
        event_id = events.new_event_id() if self.webhooks is not None else None
        before, after = self.storage.guarded(
            lambda: self.storage.message_update(key, new, orphan, self.ttl_ms, event_id))
        if after.get("status") == before or after.get("orphan"):
            return  # final meanwhile, or expired meanwhile (a stray orphan, gone with its TTL)
        if event_id is not None and events.makes_event(before, after):
            self.webhooks.wake()
        provider = str(after.get("provider") or self.provider_name)
        metrics.count_delivery_status(provider, model.UNKNOWN, after.get("country"))
        metrics.MADE_UNKNOWN.labels(provider).inc()
        log.info("delivery status", extra={
            "provider": provider, "sid": after.get("sid"), "receiver": after.get("receiver"),
            "old_status": before, "new_status": model.UNKNOWN,
            "reason": "no final report within MESSAGE_FINAL_AFTER"})

    def _price(self, sid: str, price: str, unit: str) -> None:
        """Give the record its price; count the spend only if this report was the one that did."""
        priced = self.storage.guarded(lambda: self.storage.message_price(self._key(sid), price, unit))
        if priced is not None:
            metrics.count_spend(self.provider_name, priced.get("country"), unit, price)

    # -- reading -------------------------------------------------------------------------

    def read(self, sid: str, caller: str | None) -> dict[str, Any] | None:
        """The public fields of a send's record; None when unknown, an orphan, or another caller's.

        `caller` is the identity of the caller's API key, None when API_KEYS is off.
        Raises `StorageUnavailable`.
        """
        if not sid or len(sid) > MAX_SID_CHARS:
            return None
        record = self.storage.guarded(lambda: self.storage.message_get(self._key(sid)))
        if record is None or record.get("orphan"):
            return None
        if caller is not None and not hmac.compare_digest(str(record.get("owner") or ""), caller):
            return None
        return public_view(record, webhooks=self.webhooks is not None)

    def list(self, caller: str | None, *, receiver: str | None = None, limit: int = listing.DEFAULT_LIMIT,
             cursor: str | None = None, **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        """A page of the caller's records (all when API_KEYS is off), newest first, and the next cursor.

        `filters` are `Storage.message_list`'s; `receiver` a full E.164 number. Raises
        `StorageUnavailable`, and ValueError for a cursor that is not one of ours.
        """
        if receiver is not None:
            if self.receivers is None:
                return [], None
            filters["receiver_hash"] = self.receivers.hash(receiver)
        records, following = self.storage.guarded(
            lambda: self.storage.message_list(caller, limit=limit, cursor=cursor, **filters))
        return [public_view(record, webhooks=self.webhooks is not None) for record in records], following

    def _key(self, sid: str) -> str:
        return f"{self.provider_name}:{sid}"


def _checked(update: StatusUpdate) -> tuple[str, str]:
    if not isinstance(update, StatusUpdate):
        raise ValueError("a status callback parser returned something other than StatusUpdate values")
    sid = update.sid
    if not isinstance(sid, str) or not sid or len(sid) > MAX_SID_CHARS or not sid.isprintable():
        raise ValueError("a status update has no usable message id")
    if update.status not in model.STATUSES:
        raise ValueError(f"a status update has an unknown status {str(update.status)[:20]!r}")
    return sid, update.status


def _word(value: object, name: str) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    # The provider's own words reach logs and answers: printable, one line, bounded.
    text = "".join(c for c in text if c.isprintable())[:MAX_WORD_CHARS]
    return text or None

"""Status webhooks (SPEC section 11): an event's body, its Standard Webhooks signature, one attempt.

The retry schedule lives here too; the deliverer (`status/deliverer.py`) decides when to
run an attempt and what to do with its result.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from standardwebhooks import Webhook

from sms_service.exceptions import ProviderError, ProviderTimeout
from sms_service.provider_http import ProviderHTTP
from sms_service.status.service import public_view

EVENT_TYPE = "message.status"
# Per attempt, the whole exchange: connect, send, status line, headers and body.
ATTEMPT_DEADLINE_S = 5.0
# Per address the receiver's name resolves to, within the deadline: a dead first address
# leaves the next about 2 s (one TCP SYN retransmission fits in 3 s).
CONNECT_TIMEOUT_S = 3.05
# Waits after the 1st, 2nd, ... failed attempt; then every RETRY_EVERY_S.
RETRY_SCHEDULE_S = (1, 5, 30, 120, 600, 1800)
RETRY_EVERY_S = 3600
# Retries come up to this share early, never late: a receiver that blipped gets its
# event within seconds, and many events failed at once do not all return in one burst.
JITTER = 0.1
RECEIVER_NAME = "the status webhook receiver"


def retry_delay_ms(failed_attempts: int, rand: Callable[[], float] = random.random) -> int:
    """How long to wait after the `failed_attempts`-th failed attempt (1 for the first)."""
    index = max(1, failed_attempts) - 1
    base_s = RETRY_SCHEDULE_S[index] if index < len(RETRY_SCHEDULE_S) else RETRY_EVERY_S
    return max(1, int(base_s * 1000 * (1 - JITTER * rand())))


def event_body(record: dict[str, Any]) -> bytes:
    """The JSON body of a record's event: its public fields, as GET /messages answers them."""
    return json.dumps({"type": EVENT_TYPE, "data": public_view(record, webhooks=True)},
                      separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to: a result word (metrics.WEBHOOK_RESULTS) and the HTTP status, if any."""

    result: str
    status: int | None = None

    @property
    def delivered(self) -> bool:
        return self.result == "delivered"


class WebhookClient:
    """Signs events with STATUS_WEBHOOK_SECRET and posts them to STATUS_WEBHOOK_URL, pooled."""

    def __init__(self, url: str, secret: str, pool_size: int, user_agent: str) -> None:
        self.url = url
        self._signer = Webhook(secret)
        # ProviderHTTP: one pool per worker, the whole attempt inside one deadline, never a
        # redirect followed (a 3xx is a failed attempt: the signature is for our URL alone),
        # and only a refused connection tried again.
        self.http = ProviderHTTP(
            RECEIVER_NAME, timeout=ATTEMPT_DEADLINE_S, connect_timeout=CONNECT_TIMEOUT_S,
            pool_size=pool_size, max_answer_bytes=64 << 10,
            headers={"Content-Type": "application/json", "User-Agent": user_agent})

    def __repr__(self) -> str:  # never the secret
        return f"WebhookClient({self.url!r})"

    def headers(self, event_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt: the id is the event's, the time is now."""
        seconds = int(time.time() if now is None else now)
        at = dt.datetime.fromtimestamp(seconds, dt.UTC)
        return {"webhook-id": event_id, "webhook-timestamp": str(seconds),
                "webhook-signature": self._signer.sign(event_id, at, body.decode())}

    def attempt(self, event_id: str, record: dict[str, Any]) -> Attempt:
        """Post one event once; never raises for the receiver's failures."""
        body = event_body(record)
        try:
            answer = self.http.request("POST", self.url, data=body, headers=self.headers(event_id, body))
        except ProviderTimeout:
            return Attempt("timeout")
        except ProviderError:  # refused, reset, unreadable: the receiver was not reached
            return Attempt("connection_error")
        if 200 <= answer.status < 300:
            return Attempt("delivered", answer.status)
        if 300 <= answer.status < 400:
            return Attempt("redirect", answer.status)
        return Attempt("http_error", answer.status)

    def close(self) -> None:
        """Close the pooled connections."""
        self.http.close()

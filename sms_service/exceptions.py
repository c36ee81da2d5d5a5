"""The service's one exception tree; `errors.py` maps each class to an HTTP answer."""

from __future__ import annotations


class SmsServiceError(Exception):
    """Raised for any failure the service knows how to explain."""

    #: a fixed word naming the failure, used as a metrics label and in logs
    reason = "error"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class ConfigError(SmsServiceError):
    """Raised when a configuration variable is missing or wrong; the message names it."""

    reason = "config"


class ProviderLoadError(ConfigError):
    """Raised when the provider plugin cannot be found or fails to load."""

    reason = "provider_load"


# -- provider answers (raised by plugins) ---------------------------------------------


class ProviderError(SmsServiceError):
    """Raised when the provider did not accept the message.

    `provider_code` is the provider's own error code when it gave one, `http_status` the
    status of its answer, `request_id` the provider's request id when known.

    `nothing_sent` is the failover signal (SPEC section 13): True only when the failure
    proves that no SMS went out (no byte of the request left, or the provider refused
    the request before taking the message: credentials, throttling). Each class states
    its own; a plugin may set it on one error with ``nothing_sent=True`` when the
    provider's answer proves it (a documented "request not processed" code), and must
    never set it when in doubt. The dispatcher then tries the next provider, and an
    ``Idempotency-Key`` is freed for a retry.
    """

    reason = "provider_error"
    nothing_sent: bool = False
    #: the configured provider that raised it, set by the service (failover logs name it)
    provider: str | None = None

    def __init__(
        self,
        message: str,
        *,
        provider_code: str | int | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
        retry_after: int | None = None,
        nothing_sent: bool | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.provider_code = provider_code
        self.http_status = http_status
        self.request_id = request_id
        if nothing_sent is not None:
            self.nothing_sent = nothing_sent


class MessageRejected(ProviderError):
    """Raised when the provider refuses the message itself (bad number, opted out, ...).

    Nothing was sent, yet it never fails over: the message would fail at any provider
    (or must not go at all, when the receiver opted out).
    """

    reason = "provider_rejected"
    nothing_sent = True


class ReceiverUnsubscribed(MessageRejected):
    """Raised when the provider refuses the message because the receiver opted out (Twilio 21610).

    The service then puts the receiver on its own suppression list (source ``provider``).
    """

    reason = "provider_opted_out"


class ProviderRateLimited(ProviderError):
    """Raised when the provider says too many requests; nothing was sent (fails over)."""

    reason = "provider_rate_limited"
    nothing_sent = True


class ProviderAuthError(ProviderError):
    """Raised when the provider refuses our credentials; nothing was sent (fails over)."""

    reason = "provider_auth"
    nothing_sent = True


class ProviderUnavailable(ProviderError):
    """Raised on a provider 5xx, an unreadable answer or a broken connection (an SMS may have gone)."""

    reason = "provider_unavailable"


class ProviderUnreachable(ProviderUnavailable):
    """Raised when the provider could not be reached: no byte of the request was sent,
    so no SMS can have gone (fails over)."""

    reason = "provider_unreachable"
    nothing_sent = True


class NoProviderAvailable(ProviderUnreachable):
    """Raised when every configured provider's circuit is open, so none was called."""

    reason = "circuit_open"


class ProviderTimeout(ProviderError):
    """Raised when the provider took the request but did not answer within PROVIDER_TIMEOUT."""

    reason = "provider_timeout"


class CallbackRefused(SmsServiceError):
    """Raised when a status callback is not authentic: a bad or missing signature or token."""

    reason = "callback_refused"


# -- guards ---------------------------------------------------------------------------


class GuardRejection(SmsServiceError):
    """Raised when an anti-fraud guard refuses a request before any provider call."""

    guard = "guard"


class RateLimitExceeded(GuardRejection):
    """Raised when the deployment-wide rate limit is reached."""

    reason = "rate_limit"
    guard = "rate_limit"


class DestinationRefused(GuardRejection):
    """Raised when the destination country or number type is not allowed."""

    reason = "destination_policy"
    guard = "destination_policy"


class ReceiverTooSoon(GuardRejection):
    """Raised when the same receiver is asked for again before its delay has passed."""

    reason = "exponential_delay"
    guard = "exponential_delay"


class ReceiverSuppressed(GuardRejection):
    """Raised when the receiver is on the suppression list (it opted out)."""

    reason = "opted_out"
    guard = "suppression"


class BalanceExhausted(GuardRejection):
    """Raised when the provider balance is zero or less."""

    reason = "balance_exhausted"
    guard = "balance"


class BalanceUnavailable(GuardRejection):
    """Raised when the balance could not be read, so the send is refused (fail closed)."""

    reason = "balance_unavailable"
    guard = "balance"


class SegmentBudgetExceeded(GuardRejection):
    """Raised when a message's segments would take its country over its SEGMENT_BUDGETS budget."""

    reason = "segment_budget"
    guard = "segment_budget"


class MessageOverBudget(GuardRejection):
    """Raised when a message has more segments than its country's whole budget: it can never go."""

    reason = "segment_budget_too_small"
    guard = "segment_budget"


class StorageUnavailable(SmsServiceError):
    """Raised when the guards' shared storage cannot be reached (fail closed)."""

    reason = "storage_unavailable"


# -- idempotency ----------------------------------------------------------------------


class IdempotencyKeyInvalid(SmsServiceError):
    """Raised when the Idempotency-Key header is not 1 to 255 printable ASCII characters."""

    reason = "validation"


class IdempotencyConflict(SmsServiceError):
    """Raised when a request with the same key is still in flight."""

    reason = "idempotency_in_flight"


class IdempotencyMismatch(SmsServiceError):
    """Raised when a key is reused with a different payload."""

    reason = "idempotency_mismatch"


def proves_nothing_sent(exc: BaseException) -> bool:
    """Tell whether a failed send proves that no SMS went out (the one rule for it).

    A guard or the storage refused before any provider call, or the provider's error
    says so itself (`ProviderError.nothing_sent`, which a plugin may also turn off for
    one error). The Idempotency-Key is then freed; any other failure (timeout, 5xx,
    unreadable answer, a plugin's bug) may hide a sent SMS, so its answer is kept.
    """
    if isinstance(exc, GuardRejection | StorageUnavailable | TemplateError):
        return True
    return isinstance(exc, ProviderError) and exc.nothing_sent


# -- message templates (SPEC section 16) ----------------------------------------------


class TemplateError(SmsServiceError):
    """Raised when a send, an estimate or a preview cannot be rendered from its template.

    Nothing was sent: it is refused before any guard or provider.
    """

    reason = "template"


class TemplateNotFound(TemplateError):
    """Raised when a template (or the version asked for) is unknown or archived."""

    reason = "template_not_found"


class PersonalisationInvalid(TemplateError):
    """Raised when the personalisation does not fit the template, or the rendered text breaks a body rule."""

    reason = "validation"

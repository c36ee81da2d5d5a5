"""Failover (SPEC section 13) in process: the SERVICE_PROVIDER grammar, which failures move on,
the circuit breakers around each provider, and the guards applied once per request."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

import pytest
import responses

from sms_service.app import create_app
from sms_service.circuit import Circuit
from sms_service.config import load_settings
from sms_service.dispatch import Dispatcher
from sms_service.exceptions import (
    BalanceExhausted,
    BalanceUnavailable,
    ConfigError,
    MessageRejected,
    NoProviderAvailable,
    ProviderAuthError,
    ProviderError,
    ProviderLoadError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnreachable,
    ReceiverSuppressed,
    ReceiverTooSoon,
    ReceiverUnsubscribed,
)
from sms_service.failover import Failover, Route, moves_on
from sms_service.guards import Guards
from sms_service.plugin_loader import load_providers
from sms_service.provider import Balance, Provider, Receipt
from sms_service.storage import MemoryStorage

TWILIO = {"TWILIO_ACCOUNT_SID": "AC" + "1f" * 16, "TWILIO_AUTH_TOKEN": "tok3n" + "9" * 27}
KALEYRA = {"KALEYRA_SID": "HXAP1234567890KL", "KALEYRA_API_KEY": "Akey" + "7" * 28}
TWILIO_SEND = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO['TWILIO_ACCOUNT_SID']}/Messages.json"
TWILIO_BALANCE = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO['TWILIO_ACCOUNT_SID']}/Balance.json"
KALEYRA_SEND = f"https://api.kaleyra.io/v1/{KALEYRA['KALEYRA_SID']}/messages"


# -- SERVICE_PROVIDER and the failover settings ------------------------------------------


def test_a_single_provider_reads_as_before():
    s = load_settings({"SERVICE_PROVIDER": " console "})
    assert s.provider == "console" and s.providers == ("console",)
    assert s.failover_failure_threshold == 5 and s.failover_reset_after_ms == 30_000


def test_an_ordered_list_keeps_its_order_and_each_balance_check():
    s = load_settings({"SERVICE_PROVIDER": "twilio, kaleyra", "KALEYRA_EMPTY_BALANCE_CHECK": "true",
                       "FAILOVER_FAILURE_THRESHOLD": "3", "FAILOVER_RESET_AFTER": "2 minutes"})
    assert s.providers == ("twilio", "kaleyra") and s.provider == "twilio"
    assert s.balance_checks == {"twilio": False, "kaleyra": True}
    assert s.balance_check is False  # the first provider's, as before
    assert (s.failover_failure_threshold, s.failover_reset_after_ms) == (3, 120_000)


@pytest.mark.parametrize(("value", "says"), [
    ("twilio,twilio", "names twilio more than once"),
    ("twilio,,kaleyra", "empty entry"),
    ("twilio,", "empty entry"),
    (",twilio", "empty entry"),
    ("a,b,c,d,e", "at most 4"),
    ("", "is not set"),
])
def test_a_bad_provider_list_stops_start_up_with_one_line(value, says):
    with pytest.raises(ConfigError) as info:
        load_settings({"SERVICE_PROVIDER": value})
    message = str(info.value)
    assert message.startswith("SERVICE_PROVIDER") and says in message and "\n" not in message


@pytest.mark.parametrize(("name", "value"), [
    ("FAILOVER_FAILURE_THRESHOLD", "0"), ("FAILOVER_FAILURE_THRESHOLD", "two"),
    ("FAILOVER_FAILURE_THRESHOLD", "-1"), ("FAILOVER_RESET_AFTER", "soon"), ("FAILOVER_RESET_AFTER", "0"),
])
def test_bad_failover_settings_name_their_variable(name, value):
    with pytest.raises(ConfigError) as info:
        load_settings({"SERVICE_PROVIDER": "console", name: value})
    assert str(info.value).startswith(name) and "\n" not in str(info.value)


def test_an_unknown_provider_in_the_list_names_it_and_lists_the_installed():
    with pytest.raises(ProviderLoadError) as info:
        load_providers(load_settings({"SERVICE_PROVIDER": "console,nope", **TWILIO}))
    message = str(info.value)
    assert message.startswith("SERVICE_PROVIDER 'nope'") and "twilio" in message and "kaleyra" in message


def test_every_provider_is_validated_with_its_own_variables():
    with pytest.raises(ConfigError, match="^KALEYRA_(SID|API_KEY) is required"):
        create_app({"SERVICE_PROVIDER": "twilio,kaleyra", **TWILIO, "STORAGE_URI": "memory://"})
    with pytest.raises(ConfigError, match="^TWILIO_ACCOUNT_SID is required"):
        create_app({"SERVICE_PROVIDER": "kaleyra,twilio", **KALEYRA, "STORAGE_URI": "memory://"})


def test_each_provider_gets_its_own_balance_check():
    providers = load_providers(load_settings({
        "SERVICE_PROVIDER": "kaleyra,twilio", **TWILIO, **KALEYRA, "TWILIO_EMPTY_BALANCE_CHECK": "true"}))
    assert list(providers) == ["kaleyra", "twilio"]
    app = create_app({"SERVICE_PROVIDER": "kaleyra,twilio", **TWILIO, **KALEYRA,
                      "TWILIO_EMPTY_BALANCE_CHECK": "true", "STORAGE_URI": "memory://"})
    routes = app.extensions["sms_service"].failover.routes
    assert [(r.name, r.balance_check) for r in routes] == [("kaleyra", False), ("twilio", True)]
    assert all(r.circuit is not None for r in routes)


def test_a_single_provider_has_no_circuit():
    app = create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"})
    (route,) = app.extensions["sms_service"].failover.routes
    assert route.circuit is None


# -- which failures move on ---------------------------------------------------------------


@pytest.mark.parametrize(("exc", "moves"), [
    (ProviderUnreachable("refused"), True),
    (ProviderAuthError("401"), True),
    (ProviderRateLimited("429"), True),
    (BalanceExhausted("empty"), True),
    (BalanceUnavailable("unknown"), True),
    (NoProviderAvailable("open"), True),
    (ProviderTimeout("late"), False),
    (ProviderUnavailable("5xx"), False),
    (ProviderError("other"), False),
    (MessageRejected("21211"), False),
    (ReceiverUnsubscribed("21610"), False),
    (ValueError("a plugin's bug"), False),
    # A plugin may prove "nothing sent" for one answer, and only then.
    (ProviderUnavailable("not processed", nothing_sent=True), True),
    (ProviderAuthError("odd", nothing_sent=False), False),
])
def test_only_a_failure_that_proves_nothing_was_sent_moves_on(exc, moves):
    assert moves_on(exc) is moves


# -- the dispatcher over scripted providers ------------------------------------------------


class Scripted(Provider):
    """A provider that answers from a script: a sid to accept, an exception to raise."""

    def __init__(self, *answers, balance: str = "5") -> None:
        super().__init__({}, timeout=1)
        self.answers = list(answers)
        self.calls = 0
        self.balance_calls = 0
        self.amount = balance

    def send(self, message):
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return Receipt(sid=answer, status="queued", date_event=dt.datetime.now(dt.UTC))

    def balance(self):
        self.balance_calls += 1
        if self.amount == "error":
            raise ProviderUnavailable("balance down")
        return Balance(Decimal(self.amount), "USD")


RECEIVERS = iter(range(1000, 9999))


def receiver() -> str:
    return f"+1202555{next(RECEIVERS):04d}"


def dispatcher(*providers: Scripted, threshold: int = 3, reset_ms: float = 60_000, balance: bool = False,
               storage=None):
    storage = storage or MemoryStorage()
    settings = load_settings({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"})
    names = ["first", "second", "third"][:len(providers)]
    routes = [Route(name, p, balance, None,
                    Circuit(name, storage, threshold, reset_ms, 10_000) if len(providers) > 1 else None)
              for name, p in zip(names, providers, strict=True)]
    guards = Guards(settings, storage)
    return Dispatcher(names[0], providers[0], guards, None, Failover(routes))


def send(d: Dispatcher, to: str | None = None):
    return d.send("+15017122661", to or receiver(), "hello")


@pytest.mark.parametrize("failure", [
    ProviderUnreachable("could not connect"), ProviderAuthError("credentials"), ProviderRateLimited("429"),
])
def test_a_nothing_sent_failure_moves_to_the_next_provider(failure):
    first, second = Scripted(failure), Scripted("SM2")
    answer, fields = send(dispatcher(first, second))
    assert answer["sid"] == "SM2" and (first.calls, second.calls) == (1, 1)
    assert fields["provider"] == "second" and fields["failover_from"] == "first"


@pytest.mark.parametrize("failure", [
    ProviderTimeout("late"), ProviderUnavailable("500"), MessageRejected("21211"), ReceiverUnsubscribed("21610"),
    ProviderUnavailable("not JSON"), KeyError("a plugin's bug"),
])
def test_a_failure_that_may_have_sent_or_judges_the_message_never_moves_on(failure):
    first, second = Scripted(failure), Scripted("SM2")
    with pytest.raises(type(failure)):
        send(dispatcher(first, second))
    assert (first.calls, second.calls) == (1, 0)


def test_an_opt_out_the_provider_knew_is_learned_and_no_one_else_sends():
    first, second = Scripted(ReceiverUnsubscribed("21610", provider_code=21610)), Scripted("SM2")
    d = dispatcher(first, second)
    to = receiver()
    with pytest.raises(ReceiverUnsubscribed):
        send(d, to)
    assert second.calls == 0
    with pytest.raises(ReceiverSuppressed):
        send(d, to)


def test_balance_empty_or_unknown_moves_on_without_sending():
    for amount in ("0", "-1", "error"):
        first, second = Scripted("SM1", balance=amount), Scripted("SM2")
        answer, _ = send(dispatcher(first, second, balance=True))
        assert answer["sid"] == "SM2" and first.calls == 0 and first.balance_calls == 1


def test_every_provider_unusable_answers_the_last_ones_own_failure_naming_each():
    first = Scripted(ProviderAuthError("twilio refused our credentials"))
    second = Scripted(ProviderRateLimited("slow down", retry_after=7))
    with pytest.raises(ProviderRateLimited) as info:
        send(dispatcher(first, second))
    assert info.value.retry_after == 7
    assert info.value.message == ("no provider could take the message, nothing was sent: "
                                  "first: twilio refused our credentials; second: slow down")
    first, second = Scripted(ProviderRateLimited("slow")), Scripted(ProviderUnreachable("could not connect"))
    with pytest.raises(ProviderUnreachable):
        send(dispatcher(first, second))


def test_a_single_provider_answers_exactly_its_own_failure():
    for failure in (ProviderUnreachable("could not connect to twilio"), ProviderAuthError("refused")):
        with pytest.raises(type(failure)) as info:
            send(dispatcher(Scripted(failure)))
        assert info.value is failure
    with pytest.raises(BalanceExhausted, match="^provider balance is exhausted"):
        send(dispatcher(Scripted("SM1", balance="0"), balance=True))


def test_guards_apply_once_per_request_whatever_the_providers_tried():
    first, second, third = Scripted(ProviderUnreachable("x")), Scripted(ProviderAuthError("y")), Scripted("SM3")
    d = dispatcher(first, second, third)
    to = receiver()
    # The exponential delay admits one message now: a second look-up would refuse it.
    assert send(d, to)[0]["sid"] == "SM3"
    with pytest.raises(ReceiverTooSoon):
        send(d, to)
    assert (first.calls, second.calls, third.calls) == (1, 1, 1)


# -- circuits -----------------------------------------------------------------------------


def test_the_circuit_opens_after_the_threshold_and_later_sends_skip_the_provider():
    first, second = Scripted(ProviderUnreachable("down")), Scripted("SM2")
    d = dispatcher(first, second, threshold=3)
    for _ in range(3):
        send(d)
    assert first.calls == 3
    for _ in range(4):
        assert send(d)[0]["sid"] == "SM2"
    assert first.calls == 3 and second.calls == 7
    assert d.failover.routes[0].circuit.state()[0] == "open"


def test_every_provider_side_failure_counts_but_a_rejected_message_does_not():
    first, second = Scripted(MessageRejected("21211")), Scripted("SM2")
    d = dispatcher(first, second, threshold=2)
    for _ in range(5):
        with pytest.raises(MessageRejected):
            send(d)
    assert d.failover.routes[0].circuit.state()[0] == "closed" and first.calls == 5
    first.answers = [ProviderTimeout("late"), ProviderUnavailable("500")]
    for failure in (ProviderTimeout, ProviderUnavailable):
        with pytest.raises(failure):
            send(d)
    assert d.failover.routes[0].circuit.state()[:2] == ("open", 2)


def test_a_success_in_between_resets_the_count():
    first, second = Scripted(ProviderUnreachable("a"), "SM1", ProviderUnreachable("b"), "SM1"), Scripted("SM2")
    d = dispatcher(first, second, threshold=2)
    assert [send(d)[0]["sid"] for _ in range(4)] == ["SM2", "SM1", "SM2", "SM1"]
    assert d.failover.routes[0].circuit.state()[:2] == ("closed", 0)


def test_after_the_reset_time_one_trial_goes_and_its_success_closes_the_circuit():
    first, second = Scripted(ProviderUnreachable("down")), Scripted("SM2")
    d = dispatcher(first, second, threshold=1, reset_ms=300)
    send(d)
    send(d)
    assert first.calls == 1
    time.sleep(0.35)
    first.answers = ["SM1"]
    assert send(d)[0]["sid"] == "SM1"  # the trial
    assert d.failover.routes[0].circuit.state()[0] == "closed"
    assert send(d)[0]["sid"] == "SM1" and first.calls == 3


def test_a_failed_trial_opens_the_circuit_again():
    first, second = Scripted(ProviderUnreachable("down")), Scripted("SM2")
    d = dispatcher(first, second, threshold=1, reset_ms=300)
    send(d)
    time.sleep(0.35)
    send(d)  # the trial, which fails
    assert first.calls == 2
    send(d)
    assert first.calls == 2 and d.failover.routes[0].circuit.state()[0] == "open"


def test_every_circuit_open_is_502_and_calls_no_provider():
    first, second = Scripted(ProviderUnreachable("a")), Scripted(ProviderUnreachable("b"))
    d = dispatcher(first, second, threshold=1)
    with pytest.raises(ProviderUnreachable):
        send(d)
    with pytest.raises(NoProviderAvailable, match="circuit is open"):
        send(d)
    assert (first.calls, second.calls) == (1, 1)


def test_a_circuit_storage_failure_fails_closed_before_any_send():
    class Down(MemoryStorage):
        def circuit_admit(self, key, lease_ms):
            raise OSError("storage down")

    first, second = Scripted("SM1"), Scripted("SM2")
    from sms_service.exceptions import StorageUnavailable

    with pytest.raises(StorageUnavailable):
        send(dispatcher(first, second, storage=Down()))
    assert (first.calls, second.calls) == (0, 0)


# -- through the app, with the real plugins (their HTTP faked by responses) ----------------


def failover_app(**env: str):
    return create_app({"SERVICE_PROVIDER": "twilio,kaleyra", **TWILIO, **KALEYRA, "STORAGE_URI": "memory://",
                       "TWILIO_EMPTY_BALANCE_CHECK": "true", **env})


def test_check_up_lists_each_provider_with_its_circuit_and_balance():
    app = failover_app(FAILOVER_FAILURE_THRESHOLD="1")
    client = app.test_client()
    with responses.RequestsMock() as mock:
        mock.get(TWILIO_BALANCE, json={"balance": "0.00", "currency": "USD"})
        body = client.get("/-/check-up").get_json()
        assert body["providers"] == [
            {"name": "twilio", "circuit": "closed", "failures": 0, "balance": "empty"},
            {"name": "kaleyra", "circuit": "closed", "failures": 0},
        ]
        assert body["checks"]["providers"] == "OK" and body["checks"]["provider_balance:twilio"] == "OK"
        # twilio empty: kaleyra sends; then twilio unreachable once opens its circuit (threshold 1).
        mock.add(responses.POST, KALEYRA_SEND, status=202, json={
            "id": "k-1", "createdDateTime": "2026-11-26 09:00:00+00:00", "data": [{"message_id": "k-1:1"}]})
        answer = client.post("/send", json={"sender": "ACME", "receiver": receiver(), "body": "hi"})
        assert answer.status_code == 200 and answer.get_json()["sid"] == "k-1"
        body = client.get("/-/check-up").get_json()
        assert body["providers"][0]["circuit"] == "open"
        assert body["checks"]["providers"] == "OK"  # kaleyra still takes messages
        metrics = client.get("/-/metrics").get_data(as_text=True)
    assert 'sms_circuit_state{provider="twilio",state="open"} 1.0' in metrics
    assert 'sms_circuit_state{provider="kaleyra",state="closed"} 1.0' in metrics
    assert 'sms_failover_total{from="twilio",reason="balance_exhausted",to="kaleyra"}' in metrics


def test_an_idempotency_key_freed_after_every_provider_sent_nothing_lets_a_retry_send():
    app = failover_app(TWILIO_EMPTY_BALANCE_CHECK="false")
    client = app.test_client()
    payload = {"sender": "ACME", "receiver": receiver(), "body": "hi"}
    headers = {"Idempotency-Key": "retry-1"}
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_SEND, status=401, json={"code": 20003, "message": "Authenticate"})
        mock.post(KALEYRA_SEND, status=429, json={"message": "slow down"}, headers={"Retry-After": "3"})
        answer = client.post("/send", json=payload, headers=headers)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "3"
    assert "twilio: twilio refused our credentials; kaleyra:" in answer.get_json()["message"]
    time.sleep(1.1)  # the receiver's exponential delay counted the first attempt
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_SEND, status=201, json={"sid": "SM" + "a" * 32, "status": "queued", "num_segments": "1"})
        answer = client.post("/send", json=payload, headers=headers)
        assert answer.status_code == 200 and answer.get_json()["sid"] == "SM" + "a" * 32


# -- each provider's balance check (moved here from Guards.check_balance) -----------------

KALEYRA_BALANCE = f"https://api.kaleyra.io/api/v1/{KALEYRA['KALEYRA_SID']}/billing"


def route_of(app, name: str) -> Route:
    return app.extensions["sms_service"].route(name)


@pytest.mark.parametrize(
    ("name", "url", "answer", "raises"),
    [
        ("twilio", TWILIO_BALANCE, {"balance": "12.50", "currency": "USD"}, None),
        ("twilio", TWILIO_BALANCE, {"balance": "0.00", "currency": "USD"}, BalanceExhausted),
        ("twilio", TWILIO_BALANCE, {"balance": "-3.10", "currency": "USD"}, BalanceExhausted),
        ("twilio", TWILIO_BALANCE, {"nothing": "here"}, BalanceUnavailable),
        ("kaleyra", KALEYRA_BALANCE, {"data": {"balance": "5", "currency": "EUR"}}, None),
        ("kaleyra", KALEYRA_BALANCE, {"data": {"balance": "0", "currency": "EUR"}}, BalanceExhausted),
        ("kaleyra", KALEYRA_BALANCE, {"data": [{"balance": "-1"}]}, BalanceExhausted),
    ],
)
def test_balance_of_each_provider(name, url, answer, raises):
    app = failover_app(KALEYRA_EMPTY_BALANCE_CHECK="true")
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.get(url, json=answer)
        if raises is None:
            route_of(app, name).check_balance()
        else:
            with pytest.raises(raises):
                route_of(app, name).check_balance()


def test_balance_lookup_failure_fails_closed():
    app = failover_app()
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        mock.get(TWILIO_BALANCE, status=500, json={"message": "down"})
        with pytest.raises(BalanceUnavailable):
            route_of(app, "twilio").check_balance()


def test_balance_not_read_when_that_providers_check_is_off():
    app = failover_app()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(KALEYRA_BALANCE, json={"data": {"balance": "0"}})
        route_of(app, "kaleyra").check_balance()
        assert len(mock.calls) == 0


def test_a_balance_check_on_a_provider_without_balance_stops_start_up():
    with pytest.raises(ConfigError, match="^CONSOLE_EMPTY_BALANCE_CHECK is on but provider 'console'"):
        create_app({"SERVICE_PROVIDER": "twilio,console", **TWILIO, "CONSOLE_EMPTY_BALANCE_CHECK": "true",
                    "STORAGE_URI": "memory://"})


def test_the_log_line_of_a_failed_send_names_the_provider_that_failed(caplog):
    app = failover_app(TWILIO_EMPTY_BALANCE_CHECK="false")
    client = app.test_client()
    with responses.RequestsMock() as mock:
        mock.post(TWILIO_SEND, status=401, json={"code": 20003, "message": "Authenticate"})
        mock.post(KALEYRA_SEND, status=503, json={"message": "down"})
        answer = client.post("/send", json={"sender": "ACME", "receiver": receiver(), "body": "hi"})
    assert answer.status_code == 502
    failed = [r for r in caplog.records if r.getMessage() == "provider did not accept the message"]
    assert [(r.provider, r.error_class) for r in failed] == [("kaleyra", "ProviderUnavailable")]
    moved = [r for r in caplog.records if r.levelname == "ERROR" and r.getMessage().startswith("provider refused")]
    assert [(r.provider, r.next_provider, r.provider_code) for r in moved] == [("twilio", "kaleyra", 20003)]
    assert TWILIO["TWILIO_AUTH_TOKEN"] not in caplog.text and KALEYRA["KALEYRA_API_KEY"] not in caplog.text


def test_the_access_line_of_a_failed_send_names_the_provider_that_failed():
    from flask import request

    from sms_service.logs import SEND_LOG_FIELDS

    app = failover_app(TWILIO_EMPTY_BALANCE_CHECK="false")
    with app.test_client() as client, responses.RequestsMock() as mock:
        mock.post(TWILIO_SEND, status=401, json={"code": 20003, "message": "Authenticate"})
        mock.post(KALEYRA_SEND, status=503, json={"message": "down"})
        answer = client.post("/send", json={"sender": "ACME", "receiver": receiver(), "body": "hi"})
        assert answer.status_code == 502
        assert request.environ[SEND_LOG_FIELDS] == {"provider": "kaleyra"}


# -- POST /estimate names the provider a send would go to --------------------------------


def test_an_estimate_names_the_first_provider_a_send_would_use_and_changes_no_circuit():
    storage = MemoryStorage()
    first, second = Scripted(ProviderUnreachable("down")), Scripted("SM2")
    d = dispatcher(first, second, threshold=1, storage=storage)
    assert d.estimate(receiver(), "hello")["provider"] == "first"
    send(d)  # the first fails over and its circuit opens (threshold 1)
    before = storage.circuit_get("provider:first")
    assert before[0] == "open"
    assert d.estimate(receiver(), "hello")["provider"] == "second"
    assert storage.circuit_get("provider:first")[:2] == before[:2]
    assert (first.calls, second.calls) == (1, 1)


def test_an_estimate_skips_an_empty_balance_as_a_send_would_and_sends_nothing():
    first, second = Scripted("SM1", balance="0"), Scripted("SM2")
    d = dispatcher(first, second, balance=True)
    assert d.estimate(receiver(), "hello")["provider"] == "second"
    assert (first.balance_calls, first.calls, second.calls) == (1, 0, 0)


def test_an_estimate_with_every_circuit_open_gives_the_send_s_502():
    first, second = Scripted(ProviderUnreachable("down")), Scripted(ProviderUnreachable("down"))
    d = dispatcher(first, second, threshold=1)
    with pytest.raises(ProviderUnreachable):
        send(d)
    with pytest.raises(NoProviderAvailable) as estimated:
        d.estimate(receiver(), "hello")
    with pytest.raises(NoProviderAvailable) as sent:
        send(d)
    assert estimated.value.message == sent.value.message
    assert (first.calls, second.calls) == (1, 1)


# -- review fixes -------------------------------------------------------------------------


def test_a_circuit_that_cannot_record_never_changes_the_answer(caplog):
    class Broken(MemoryStorage):
        def circuit_record(self, *args, **kwargs):
            raise ValueError("a bug in the storage")

    first, second = Scripted(ProviderUnreachable("down")), Scripted("SM2")
    answer, fields = send(dispatcher(first, second, storage=Broken()))
    assert answer["sid"] == "SM2" and fields["provider"] == "second"
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "circuit" in r.getMessage()]
    # The first's failure and the second's success each met the broken storage: logged, and no more.
    assert [(r.provider, r.error_class) for r in errors] == [("first", "ValueError"), ("second", "ValueError")]
    assert "a bug in the storage" not in caplog.text


def budget_dispatcher(*providers: Scripted, balance: bool = False):
    storage = MemoryStorage()
    settings = load_settings({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://",
                              "SEGMENT_BUDGETS": "US=5/1d"})
    routes = [Route(name, p, balance, None, Circuit(name, storage, 3, 60_000, 10_000))
              for name, p in zip(["first", "second"], providers, strict=True)]
    return Dispatcher("first", providers[0], Guards(settings, storage), None, Failover(routes)), storage


@pytest.mark.parametrize(("failure", "refunded"), [
    (ProviderUnreachable("could not connect"), True),
    (ProviderAuthError("credentials"), True),
    (ProviderRateLimited("429"), True),
    (MessageRejected("21211"), True),
    (ReceiverUnsubscribed("21610"), True),
    (ProviderUnavailable("not processed", nothing_sent=True), True),
    (ProviderTimeout("late"), False),
    (ProviderUnavailable("500"), False),
    (ProviderUnavailable("not JSON"), False),
    (ProviderError("other"), False),
    (KeyError("a plugin's bug"), False),
])
def test_only_a_send_that_proves_nothing_went_gives_its_segments_back(failure, refunded):
    d, storage = budget_dispatcher(Scripted(failure), Scripted(failure))
    with pytest.raises(type(failure)):
        send(d)
    assert storage.budget_peek("US", 1, 5, 86_400_000)[1] == (0 if refunded else 1)


def test_no_usable_provider_gives_the_segments_back():
    d, storage = budget_dispatcher(Scripted("SM1", balance="0"), Scripted("SM2", balance="error"), balance=True)
    with pytest.raises(BalanceUnavailable):
        send(d)
    assert storage.budget_peek("US", 1, 5, 86_400_000)[1] == 0
    for name in ("first", "second"):  # every circuit open: nothing is called
        for _ in range(3):
            storage.circuit_record(f"provider:{name}", ok=False, trial=False, threshold=3, reset_after_ms=60_000)
    with pytest.raises(NoProviderAvailable):
        send(d)
    assert storage.budget_peek("US", 1, 5, 86_400_000)[1] == 0


def test_a_successful_send_keeps_its_segments_counted():
    d, storage = budget_dispatcher(Scripted(ProviderUnreachable("down")), Scripted("SM2"))
    assert send(d)[0]["sid"] == "SM2"
    assert storage.budget_peek("US", 1, 5, 86_400_000)[1] == 1


def test_while_a_trial_is_in_flight_estimate_and_send_both_skip_the_provider():
    storage = MemoryStorage()
    first, second = Scripted(ProviderUnreachable("down")), Scripted("SM2")
    d = dispatcher(first, second, threshold=1, reset_ms=300, storage=storage)
    send(d)  # the first fails over and its circuit opens
    time.sleep(0.35)
    assert d.estimate(receiver(), "hello")["provider"] == "first"  # a trial may go: /send would try it
    assert storage.circuit_admit("provider:first", 10_000) == ("trial", 0)  # another request holds it
    assert d.estimate(receiver(), "hello")["provider"] == "second"
    answer, fields = send(d)
    assert answer["sid"] == "SM2" and fields["provider"] == "second" and first.calls == 1
    state, _, wait = d.failover.routes[0].circuit.state()
    assert state == "open" and 9000 < wait <= 10_000


def test_a_success_clears_failures_recorded_while_it_ran(storage_uri):
    from sms_service.storage import open_storage

    storage = open_storage(storage_uri)
    circuit = Circuit("p", storage, threshold=2, reset_after_ms=60_000, lease_ms=10_000)
    slow = circuit.admit()  # admitted with 0 failures; its provider answers late, and well
    failed = circuit.admit()
    circuit.record(failed, ok=False)  # another request failed meanwhile
    circuit.record(slow, ok=True)
    late = circuit.admit()
    circuit.record(late, ok=False)
    # fail, success, fail: not two consecutive failures, so the circuit stays closed.
    assert circuit.state()[:2] == ("closed", 1)
    storage.close()


@pytest.mark.parametrize("value", ["25h", "2 days", str(10**20)])
def test_failover_reset_after_is_at_most_a_day(value):
    with pytest.raises(ConfigError) as info:
        load_settings({"SERVICE_PROVIDER": "twilio,kaleyra", "FAILOVER_RESET_AFTER": value})
    message = str(info.value)
    assert message == f"FAILOVER_RESET_AFTER must be at most 1 day, got {value!r}"
    assert load_settings({"SERVICE_PROVIDER": "console", "FAILOVER_RESET_AFTER": "1d"}).failover_reset_after_ms == 86_400_000


def test_failover_settings_with_a_single_provider_get_one_start_up_warning(caplog):
    with caplog.at_level("WARNING"):
        create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://", "FAILOVER_RESET_AFTER": "1m",
                    "FAILOVER_FAILURE_THRESHOLD": "2"})
    ignored = [r for r in caplog.records if "FAILOVER" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in ignored] == [(
        "WARNING", "FAILOVER_FAILURE_THRESHOLD and FAILOVER_RESET_AFTER are ignored: SERVICE_PROVIDER names "
                   "one provider, so there is no other to fail over to and no circuit breaker")]
    caplog.clear()
    with caplog.at_level("WARNING"):
        create_app({"SERVICE_PROVIDER": "console", "STORAGE_URI": "memory://"})
        failover_app(FAILOVER_RESET_AFTER="1m")
    assert not [r for r in caplog.records if "FAILOVER" in r.getMessage()]


def test_an_estimate_with_no_usable_provider_logs_no_failed_send(caplog):
    app = failover_app(TWILIO_EMPTY_BALANCE_CHECK="false", FAILOVER_FAILURE_THRESHOLD="1")
    storage = app.extensions["sms_service"].storage
    for name in ("twilio", "kaleyra"):
        storage.circuit_record(f"provider:{name}", ok=False, trial=False, threshold=1, reset_after_ms=60_000)
    client = app.test_client()
    estimated = client.post("/estimate", json={"sender": "ACME", "receiver": receiver(), "body": "hi"})
    assert estimated.status_code == 502 and "circuit is open" in estimated.json["message"]
    assert not [r for r in caplog.records if r.levelname in ("WARNING", "ERROR") and r.name == "sms_service.errors"]
    sent = client.post("/send", json={"sender": "ACME", "receiver": receiver(), "body": "hi"})
    assert sent.status_code == 502 and sent.json["message"] == estimated.json["message"]
    failed = [r for r in caplog.records if r.getMessage() == "provider did not accept the message"]
    assert [r.error_class for r in failed] == ["NoProviderAvailable"]

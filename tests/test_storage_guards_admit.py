"""Storage.guards_admit (SPEC section 22) on every storage: the same answers as its single operations.

Each backend's own implementation (one lock, two statements, one Lua script) runs beside
the composed default of `base.Storage` (the single operations in sequence) on the same
storage, under other keys, and must answer alike; then under threads it must keep the
rules the sequence keeps: one turn of the delay per streak step, no budget spent by a
send the delay refused, never more than the budget.
"""

from __future__ import annotations

import threading
import time

import pytest

from sms_service.storage import RedisStorage, SqliteStorage, open_storage
from sms_service.storage.base import BudgetAsk, CircuitAsk, GuardsAnswer, Storage

RESET_MS = 600_000
WINDOW_MS = 60_000


@pytest.fixture
def storage(storage_uri):
    store = open_storage(storage_uri)
    yield store
    store.close()


def run(storage: Storage, composed: bool, side: str, number: str, *, budget: int | None = None,
        cost: int = 1, circuit: bool = False) -> GuardsAnswer:
    """One guards_admit on side `side` ('own' or 'seq' keys): the backend's, or the composed default."""
    ask = BudgetAsk(f"{side}-XX", cost, budget, WINDOW_MS) if budget is not None else None
    circuit_ask = CircuitAsk(f"provider:{side}", 30_000) if circuit else None
    admit = Storage.guards_admit if composed else type(storage).guards_admit
    return admit(storage, f"{side}{number}", f"delay-{side}-{number}", RESET_MS, ask, circuit_ask)


def alike(own: GuardsAnswer, seq: GuardsAnswer) -> None:
    """The two answers agree: the same refusal, waits within the time between the calls."""
    assert own.refused == seq.refused, (own, seq)
    assert abs(own.wait_ms - seq.wait_ms) <= 250, (own, seq)
    assert own.budget_used == seq.budget_used, (own, seq)
    assert (own.budget_at > 0) == (seq.budget_at > 0), (own, seq)
    assert own.circuit == seq.circuit or (own.circuit[0] == seq.circuit[0] == "open"), (own, seq)


def both(storage: Storage, number: str, **options) -> GuardsAnswer:
    own = run(storage, False, "own", number, **options)
    seq = run(storage, True, "seq", number, **options)
    alike(own, seq)
    return own


def test_a_first_send_is_admitted_with_its_spend_and_the_circuit_closed(storage):
    answer = both(storage, "+12025550100", budget=10, cost=3, circuit=True)
    assert answer.refused is None and answer.wait_ms == 0
    assert answer.budget_used == 3 and answer.budget_at > 0
    assert answer.circuit == ("closed", 0)
    # Counted like the single operations count: the delay's turn and the spend.
    assert storage.delay_peek("delay-own-+12025550100", RESET_MS) > 0
    assert storage.budget_peek("own-XX", 1, 10, WINDOW_MS) == (0, 3)
    # Without a budget or a circuit, nothing about them comes back.
    plain = both(storage, "+12025550101")
    assert plain == GuardsAnswer(None) or (plain.refused is None and plain.budget_used is None
                                           and plain.circuit is None and plain.budget_at == 0)


def test_a_suppressed_number_is_refused_first_and_counts_nothing(storage):
    for side in ("own", "seq"):
        storage.suppression_add(f"{side}+12025550102", "STOP")
    answer = both(storage, "+12025550102", budget=10, circuit=True)
    assert answer == GuardsAnswer("suppressed")
    for side in ("own", "seq"):
        assert storage.delay_peek(f"delay-{side}-+12025550102", RESET_MS) == 0
        assert storage.budget_peek(f"{side}-XX", 1, 10, WINDOW_MS) == (0, 0)
    assert both(storage, "+12025550102") == GuardsAnswer("suppressed")


def test_a_delay_refusal_spends_no_budget(storage):
    both(storage, "+12025550103", budget=10, cost=2, circuit=True)
    answer = both(storage, "+12025550103", budget=10, cost=2, circuit=True)
    assert answer.refused == "delay" and 900 <= answer.wait_ms <= 1000
    assert answer.circuit is None and answer.budget_at == 0
    for side in ("own", "seq"):
        assert storage.budget_peek(f"{side}-XX", 1, 10, WINDOW_MS) == (0, 2)
    # Without a budget the delay refuses alike.
    both(storage, "+12025550104")
    assert both(storage, "+12025550104").refused == "delay"


def test_a_budget_refusal_takes_no_delay_turn(storage):
    both(storage, "+12025550105", budget=5, cost=4)
    answer = both(storage, "+12025550106", budget=5, cost=2, circuit=True)
    assert answer.refused == "budget" and answer.budget_used == 4
    # (SQLite errs strict by up to one of its hundred buckets.)
    assert 0 < answer.wait_ms <= WINDOW_MS * 1.01 + 1 and answer.circuit is None
    for side in ("own", "seq"):
        assert storage.delay_peek(f"delay-{side}-+12025550106", RESET_MS) == 0
    # What still fits is admitted at once: the refused receiver's streak never started.
    assert both(storage, "+12025550106", budget=5, cost=1).refused is None


def test_the_circuit_answers_as_circuit_admit(storage):
    for side in ("own", "seq"):
        for _ in range(2):
            storage.circuit_record(f"provider:{side}", False, False, 3, 300)
    assert both(storage, "+12025550107", circuit=True).circuit == ("closed", 2)
    for side in ("own", "seq"):
        storage.circuit_record(f"provider:{side}", False, False, 3, 300)
    opened = both(storage, "+12025550108", circuit=True)
    assert opened.refused is None and opened.circuit[0] == "open" and 0 < opened.circuit[1] <= 300
    time.sleep(0.35)
    assert both(storage, "+12025550109", circuit=True).circuit == ("trial", 0)
    # The trial is claimed: the next send finds the circuit open for the trial's lease.
    later = both(storage, "+12025550110", circuit=True)
    assert later.circuit[0] == "open" and later.circuit[1] > 20_000


def test_threads_sending_to_one_receiver_take_one_turn_and_keep_one_spend(storage):
    answers: list[GuardsAnswer] = []
    start = threading.Barrier(12)

    def send() -> None:
        start.wait()
        answers.append(storage.guards_admit("+12025550111", "delay-race", RESET_MS,
                                            BudgetAsk("race-XX", 2, 100, WINDOW_MS)))

    threads = [threading.Thread(target=send) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(str(answer.refused) for answer in answers) == ["None"] + ["delay"] * 11
    # Only the admitted send's units stay spent: every refused one's spend was taken back.
    assert storage.budget_peek("race-XX", 1, 100, WINDOW_MS) == (0, 2)


def test_threads_sending_to_many_receivers_never_exceed_the_budget(storage):
    answers: list[GuardsAnswer] = []
    start = threading.Barrier(16)

    def send(i: int) -> None:
        start.wait()
        answers.append(storage.guards_admit(f"+1202555{i:04d}", f"delay-many-{i}", RESET_MS,
                                            BudgetAsk("many-XX", 1, 5, WINDOW_MS), CircuitAsk("provider:x", 1000)))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    admitted = [a for a in answers if a.refused is None]
    assert len(admitted) == 5 and all(a.circuit == ("closed", 0) for a in admitted)
    assert sorted(a.budget_used for a in admitted) == [1, 2, 3, 4, 5]
    assert all(a.refused == "budget" for a in answers if a.refused is not None)
    assert storage.budget_peek("many-XX", 1, 5, WINDOW_MS)[1] == 5
    # The refused receivers took no turn of their delay.
    turns = sum(storage.delay_peek(f"delay-many-{i}", RESET_MS) > 0 for i in range(16))
    assert turns == 5


def test_a_storage_failure_after_the_spend_takes_it_back(storage):
    # The composed default (a Redis Cluster's) calls circuit_admit last: when it fails,
    # the spend of a send that will not go is taken back before the error rises.
    class Failing(type(storage)):
        def circuit_admit(self, key, lease_ms):
            raise OSError("down")

    failing = Failing.__new__(Failing)
    failing.__dict__ = storage.__dict__
    with pytest.raises(OSError):
        Storage.guards_admit(failing, "+12025550112", "delay-fail", RESET_MS,
                             BudgetAsk("fail-XX", 3, 10, WINDOW_MS), CircuitAsk("provider:y", 1000))
    assert storage.budget_peek("fail-XX", 1, 10, WINDOW_MS) == (0, 0)


def test_one_round_trip_on_redis_and_at_most_two_statements_on_sqlite(storage):
    budget, circuit = BudgetAsk("trips-XX", 1, 100, WINDOW_MS), CircuitAsk("provider:z", 1000)
    storage.guards_admit("+12025550113", "delay-warm", RESET_MS, budget, circuit)  # loads the script
    if isinstance(storage, RedisStorage) and storage.topology.kind == "cluster":
        # A send's keys lie in several slots: a cluster keeps the composed sequence, whose
        # answers the tests above hold equal to the one script's.
        assert not storage._one_node()
    elif isinstance(storage, RedisStorage):
        def scripts() -> int:
            # The commands a script runs are counted under their own names: count the calls.
            stats = storage.client.info("commandstats")
            return sum(stats.get(name, {}).get("calls", 0) for name in ("cmdstat_evalsha", "cmdstat_eval"))

        before = scripts()
        storage.guards_admit("+12025550114", "delay-trips", RESET_MS, budget, circuit)
        assert scripts() - before == 1
    elif isinstance(storage, SqliteStorage):
        statements: list[str] = []
        conn = storage._conn()
        storage._next_sweep = float("inf")  # no periodic sweep inside the count
        conn.set_trace_callback(statements.append)
        try:
            storage.guards_admit("+12025550114", "delay-trips", RESET_MS, budget, circuit)
            assert len(statements) == 2, statements
            statements.clear()
            storage.guards_admit("+12025550115", "delay-trips-2", RESET_MS, None, circuit)
            assert len(statements) == 1, statements
        finally:
            conn.set_trace_callback(None)
    else:
        pytest.skip("memory:// has no round trips: one lock")

"""The check-up's provider balances: read at most once per FRESH_MS for the whole deployment.

`/-/check-up` is open without a key, because probes call it: a balance read on every hit
would let anyone who reaches it spend the account's API quota. The reading lives in
STORAGE_URI, so every worker and replica shares it: the first hit after it went stale
takes the refresh (one key reserved for FRESH_MS) and reads the balance; every other hit
answers the last reading. (The send path's own balance check is not cached: it must see
an empty account at once.)
"""

from __future__ import annotations

import json
import os
import time

from sms_service.exceptions import ProviderError, StorageUnavailable
from sms_service.storage import Storage

FRESH_MS = 30_000
# The last reading outlives its freshness, so the hits between a refresh's start and its
# end still have one to show.
KEEP_MS = FRESH_MS + 60_000
UNKNOWN = "unknown"
# A hit that finds a refresh in flight and no reading yet (a cold start) waits for it this
# long at most, checking this often.
POLL_S = 0.05


def balance_state(storage: Storage, name: str, read, wait_s: float) -> str:
    """The balance of provider `name` as the check-up shows it: ``OK``, ``empty`` or ``KO``.

    `read` reads the provider's balance (it may raise `ProviderError`); it is called only
    by the hit that takes the refresh. `wait_s` bounds the wait for a refresh in flight.
    Raises `StorageUnavailable`.
    """
    fresh_key, last_key = f"checkup-balance:{name}:fresh", f"checkup-balance:{name}:last"
    # Every value carries a nonce: a storage tells "reserved by me" by the value it holds.
    if storage.guarded(lambda: storage.record_reserve(fresh_key, _value("refreshing"), FRESH_MS)) is None:
        try:
            state = "OK" if read().amount > 0 else "empty"
        except ProviderError:
            state = "KO"
        _remember(storage, last_key, state)
        return state
    deadline = time.monotonic() + wait_s
    while True:
        # Reserving stands for reading: when there is no reading, an "unknown" one is put
        # there for the refresh in flight to replace.
        last = storage.guarded(lambda: storage.record_reserve(last_key, _value(UNKNOWN), KEEP_MS))
        state = json.loads(last)["state"] if last is not None else UNKNOWN
        if state != UNKNOWN or time.monotonic() >= deadline:
            return state
        time.sleep(POLL_S)


def _value(state: str) -> str:
    return json.dumps({"state": state, "nonce": os.urandom(8).hex()})


def _remember(storage: Storage, key: str, state: str) -> None:
    value = _value(state)
    try:
        for _ in range(3):  # a reader may put "unknown" there between the two steps
            existing = storage.guarded(lambda: storage.record_reserve(key, value, KEEP_MS))
            if existing is None:
                return
            if storage.guarded(lambda e=existing: storage.record_swap(key, e, value, KEEP_MS)):
                return
    except StorageUnavailable:
        pass  # the next stale hit reads again; the storage check says what is wrong

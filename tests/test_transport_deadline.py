"""PROVIDER_TIMEOUT bounds the whole provider call, connect to last byte, on real loopback sockets."""

import socket
import time

import pytest
from support.drip_provider import DripProvider, unanswered_listener

from sms_service.exceptions import ProviderTimeout, ProviderUnreachable
from sms_service.provider_http import ProviderHTTP

SLACK = 0.4  # scheduling and the watchdog's wake-up, on a loaded test machine


def _timed_call(http, url):
    started = time.monotonic()
    try:
        http.request("POST", url, data={"To": "+15558675310"})
    except Exception as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


@pytest.mark.parametrize("behaviour", ["drip_head", "hang", "drip_body"])
def test_a_slow_provider_is_cut_at_the_deadline(behaviour):
    # drip_head: the status line and headers one byte every 0.3 s, each recv() well
    # inside the read timeout, so only a deadline on the whole call can end it.
    with DripProvider(behaviour, interval=0.3) as server:
        error, elapsed = _timed_call(ProviderHTTP("fake", timeout=1), server.url("/x"))
        assert isinstance(error, ProviderTimeout), error
        assert error.message == "fake did not answer within 1 s"
        assert elapsed < 1 + SLACK
        assert server.requests == 1 and server.connections == 1  # taken once, never retried


def test_the_connect_phase_is_inside_the_deadline_and_not_retried():
    listener, held = unanswered_listener()
    try:
        port = listener.getsockname()[1]
        # connect_timeout (3.05 s by default) is longer than the whole deadline.
        error, elapsed = _timed_call(ProviderHTTP("fake", timeout=0.5), f"http://127.0.0.1:{port}/x")
        assert isinstance(error, ProviderUnreachable), error  # no connection, so nothing was sent
        assert elapsed < 0.5 + SLACK  # a retried connect timeout would take twice as long
    finally:
        for sock in [listener, *held]:
            sock.close()


def test_a_connect_timeout_is_not_retried():
    listener, held = unanswered_listener()
    try:
        port = listener.getsockname()[1]
        http = ProviderHTTP("fake", timeout=5, connect_timeout=0.4)
        error, elapsed = _timed_call(http, f"http://127.0.0.1:{port}/x")
        assert isinstance(error, ProviderUnreachable)
        assert error.message == "fake did not accept a connection in time"
        assert 0.35 < elapsed < 0.4 + SLACK
    finally:
        for sock in [listener, *held]:
            sock.close()


def test_a_cut_connection_is_never_reused():
    with DripProvider("drip_head", "answer", interval=0.2) as server:
        http = ProviderHTTP("fake", timeout=0.6)
        error, _ = _timed_call(http, server.url("/x"))
        assert isinstance(error, ProviderTimeout)
        answer = http.request("POST", server.url("/x"), data={"a": "b"})
        assert answer.status == 201
        assert server.connections == 2 and server.requests == 2


def test_late_deadlines_of_finished_calls_never_cut_the_pooled_connection():
    with DripProvider("answer") as server:
        http = ProviderHTTP("fake", timeout=0.3)
        for _ in range(5):
            assert http.request("POST", server.url("/x"), data={"a": "b"}).status == 201
        time.sleep(0.5)  # every one of those deadlines has now passed
        assert http.request("POST", server.url("/x"), data={"a": "b"}).status == 201
        assert server.connections == 1 and server.requests == 6


def test_many_threads_each_keep_their_own_deadline():
    import threading

    with DripProvider("answer") as fast, DripProvider("hang") as slow:
        http = ProviderHTTP("fake", timeout=0.8)
        outcomes = []

        def call(url):
            outcomes.append((url, _timed_call(http, url)))

        threads = [threading.Thread(target=call, args=(server.url("/x"),))
                   for server in (fast, slow) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=5)
        assert len(outcomes) == 16
        for url, (error, elapsed) in outcomes:
            if url.startswith(fast.url()):
                assert error is None, error
            else:
                assert isinstance(error, ProviderTimeout) and elapsed < 0.8 + SLACK
        assert fast.requests == 8 and slow.requests == 8


def test_the_watchdog_cuts_with_shutdown_so_a_blocked_recv_returns():
    # The mechanism the deadline relies on, on this platform: shutdown() from another
    # thread ends a recv() that is blocked with no timeout.
    import threading

    left, right = socket.socketpair()
    with left, right:
        result = []
        reader = threading.Thread(target=lambda: result.append(left.recv(10)))
        reader.start()
        time.sleep(0.1)
        left.shutdown(socket.SHUT_RDWR)
        reader.join(timeout=2)
        assert result == [b""]

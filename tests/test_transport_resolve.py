"""The whole-call deadline bounds the name lookup and every address tried, on real loopback sockets.

The name lookup is faked (socket.getaddrinfo, in these tests only): it answers with
several 127.0.0.x addresses whose listeners never accept (their accept queue is full, so
the SYN is dropped and a connect hangs), or it never answers at all.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from support.drip_provider import DripProvider

from sms_service.exceptions import ProviderUnreachable
from sms_service.provider_http import ProviderHTTP
from sms_service.status import webhooks
from sms_service.status.webhooks import WebhookClient

# Generous: the machines are shared. The bug this guards against took whole multiples
# of the deadline (one per address).
MARGIN_S = 0.45
NAME = "provider.test"
WEBHOOK_KEY = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _silent_listener(ip: str, port: int = 0) -> tuple[socket.socket, list[socket.socket]]:
    """A listener on `ip` whose accept queue is full: a new connect to it hangs."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((ip, port))
    listener.listen(0)
    port = listener.getsockname()[1]
    held = []
    for _ in range(8):
        probe = socket.socket()
        probe.settimeout(0.2)
        try:
            probe.connect((ip, port))
        except OSError:
            probe.close()
            return listener, held
        held.append(probe)
    raise AssertionError(f"the accept queue of {ip}:{port} never filled")


@pytest.fixture
def silent_addresses():
    """Four loopback addresses (127.0.0.2 to .5) on one port, none of which accepts."""
    sockets = []
    first, held = _silent_listener("127.0.0.2")
    port = first.getsockname()[1]
    sockets += [first, *held]
    for last in (3, 4, 5):
        listener, held = _silent_listener(f"127.0.0.{last}", port)
        sockets += [listener, *held]
    yield [(f"127.0.0.{last}", port) for last in (2, 3, 4, 5)]
    for sock in sockets:
        sock.close()


@pytest.fixture
def resolver(monkeypatch):
    """Make NAME resolve to the addresses put in `resolver.answer`; count its lookups."""

    class Fake:
        answer: list[tuple[str, int]] = []
        hang = threading.Event()  # set: the lookup never answers (until the test ends)
        lookups: list[str] = []

    fake = Fake()
    release = threading.Event()
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host != NAME:
            return real(host, port, *args, **kwargs)
        fake.lookups.append(host)
        if fake.hang.is_set():
            release.wait(30)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", address)
                for address in fake.answer]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield fake
    release.set()  # the lookup thread left hanging ends with the test


def _post(http, port=80):
    return http.request("POST", f"http://{NAME}:{port}/x", data={"To": "+15558675310", "Body": "hi"})


def test_silent_addresses_share_one_deadline_not_one_each(silent_addresses, resolver, connects):
    resolver.answer = silent_addresses[:3]
    port = silent_addresses[0][1]
    http = ProviderHTTP("fake", timeout=1.0, connect_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(ProviderUnreachable) as caught:
        _post(http, port)
    spent = time.monotonic() - started
    assert 0.9 <= spent < 1.0 + MARGIN_S  # was 3 s: the full timeout for each address
    assert caught.value.message == "fake did not accept a connection in time"
    assert connects[0] == silent_addresses[0]


def test_each_address_gets_its_connect_timeout_within_what_is_left(silent_addresses, resolver, connects):
    # 0.4 s each: the 1st and 2nd take 0.8 s, the 3rd gets the 0.2 s left, the 4th none.
    resolver.answer = silent_addresses
    port = silent_addresses[0][1]
    http = ProviderHTTP("fake", timeout=1.0, connect_timeout=0.4)
    started = time.monotonic()
    with pytest.raises(ProviderUnreachable, match="did not accept a connection in time"):
        _post(http, port)
    assert time.monotonic() - started < 1.0 + MARGIN_S  # was 1.6 s
    assert connects == silent_addresses[:3]


def test_a_silent_address_is_passed_over_for_one_that_answers(silent_addresses, resolver, connects):
    with DripProvider("answer") as server:
        resolver.answer = [silent_addresses[0], ("127.0.0.1", server.port)]
        # Each address gets urllib3's connect timeout, so a dead first one leaves time.
        http = ProviderHTTP("fake", timeout=2.0, connect_timeout=0.3)
        answer = _post(http, server.port)
        assert answer.status == 201 and server.requests == 1
    assert connects == [silent_addresses[0], ("127.0.0.1", server.port)]


def test_a_lookup_that_never_answers_ends_at_the_deadline_as_unreachable(resolver, connects):
    resolver.hang.set()
    http = ProviderHTTP("fake", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(ProviderUnreachable) as caught:
        _post(http)
    assert time.monotonic() - started < 0.5 + MARGIN_S
    assert caught.value.message == "fake did not accept a connection in time"
    assert resolver.lookups == [NAME] and connects == []  # not retried, nothing sent


def test_a_pooled_connection_looks_nothing_up_and_a_literal_address_needs_no_thread(resolver, monkeypatch):
    threads_started = []
    real_start = threading.Thread.start

    def start(thread):
        threads_started.append(thread.name)
        return real_start(thread)

    with DripProvider("answer") as server:
        resolver.answer = [("127.0.0.1", server.port)]
        http = ProviderHTTP("fake", timeout=2.0)
        for _ in range(3):
            assert _post(http, server.port).status == 201
        assert resolver.lookups == [NAME]  # one new connection, then the pool's
        monkeypatch.setattr(threading.Thread, "start", start)
        literal = ProviderHTTP("fake", timeout=2.0)
        assert literal.request("POST", server.url("/x"), data={"a": "b"}).status == 201
    assert "provider-dns" not in threads_started


def test_a_webhook_attempt_to_silent_addresses_ends_within_its_deadline(silent_addresses, resolver, monkeypatch):
    monkeypatch.setattr(webhooks, "ATTEMPT_DEADLINE_S", 1.0)
    resolver.answer = silent_addresses[:3]
    client = WebhookClient(f"http://{NAME}:{silent_addresses[0][1]}/hook", WEBHOOK_KEY, 2, "test")
    started = time.monotonic()
    attempt = client.attempt("evt_1", {"sid": "SM1", "status": "delivered"})
    assert time.monotonic() - started < 1.0 + MARGIN_S  # was 3 s: the lease could run out
    assert attempt.result == "connection_error"


def test_a_webhook_receiver_with_a_dead_first_address_is_reached_on_the_next(silent_addresses, resolver):
    from support.webhook_receiver import SECRET, WebhookReceiver

    receiver = WebhookReceiver().start()
    try:
        port = receiver.server.server_address[1]
        resolver.answer = [silent_addresses[0], ("127.0.0.1", port)]
        client = WebhookClient(receiver.url.replace("127.0.0.1", NAME), SECRET, 2, "test")
        started = time.monotonic()
        attempt = client.attempt("evt_1", {"sid": "SM1", "status": "delivered"})
        spent = time.monotonic() - started
    finally:
        receiver.stop()
    # The dead address gets its connect timeout (3.05 s), the live one the time left.
    assert attempt.result == "delivered" and 3.0 <= spent < webhooks.ATTEMPT_DEADLINE_S

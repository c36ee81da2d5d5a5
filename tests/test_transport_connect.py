"""Never connected (nothing sent) versus connection lost after sending, on real loopback sockets."""

import logging
import socket
import time

import pytest
from support.drip_provider import DripProvider
from support.ports import free_port

from sms_service.errors import status_for
from sms_service.exceptions import ProviderTimeout, ProviderUnavailable, ProviderUnreachable
from sms_service.provider_http import ProviderHTTP

KALEYRA_SID = "HXAP1649996084IN"
LOST = "connection to fake was lost after the request was sent; the SMS may have gone"


def _post(http, url):
    return http.request("POST", url, data={"To": "+15558675310", "Body": "hi"})


def test_a_refused_connection_is_unreachable_and_tried_exactly_twice(connects):
    port = free_port()
    started = time.monotonic()
    with pytest.raises(ProviderUnreachable) as caught:
        _post(ProviderHTTP("fake", timeout=5), f"http://127.0.0.1:{port}/x")
    assert time.monotonic() - started < 1
    assert caught.value.message == "could not connect to fake"
    assert caught.value.reason == "provider_unreachable"
    assert status_for(caught.value) == 502
    assert connects.count(("127.0.0.1", port)) == 2  # the one retry a refusal allows


def test_a_failed_name_lookup_is_unreachable_and_not_retried(monkeypatch, connects):
    lookups = []

    def getaddrinfo(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(ProviderUnreachable, match="could not connect to fake"):
        _post(ProviderHTTP("fake", timeout=5), "http://provider.invalid/x")
    assert lookups == ["provider.invalid"] and connects == []


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [("close_mid_request", "could not connect to fake"),  # hangs up during the handshake
     ("hang", "fake did not accept a connection in time")],  # never answers the handshake
)
def test_a_failed_tls_handshake_is_unreachable(behaviour, message):
    # A plain TCP server behind an https:// URL: the handshake fails before any byte of
    # the HTTP request is written.
    with DripProvider(behaviour) as server:
        started = time.monotonic()
        with pytest.raises(ProviderUnreachable) as caught:
            _post(ProviderHTTP("fake", timeout=5, connect_timeout=0.3), f"https://127.0.0.1:{server.port}/x")
        assert caught.value.message == message
        assert time.monotonic() - started < 0.3 + 0.4
        assert b"POST" not in server.received and server.requests == 0


@pytest.mark.parametrize("behaviour", ["close_after_reading", "close_mid_request", "close_before_reading"])
def test_a_connection_lost_after_connecting_may_have_sent(behaviour):
    with DripProvider(behaviour) as server:
        with pytest.raises(ProviderUnavailable) as caught:
            _post(ProviderHTTP("fake", timeout=5), server.url("/x"))
        error = caught.value
        assert not isinstance(error, ProviderUnreachable)
        assert error.message == LOST
        assert "could not connect" not in error.message
        assert server.connections == 1  # a request that may have arrived is never sent again
        if behaviour == "close_after_reading":
            assert server.requests == 1


def test_garbage_is_an_unreadable_answer_not_a_lost_connection():
    with DripProvider("garbage") as server:
        with pytest.raises(ProviderUnavailable) as caught:
            _post(ProviderHTTP("fake", timeout=5), server.url("/x"))
    assert type(caught.value) is ProviderUnavailable
    assert caught.value.message == "fake answer could not be read"


def test_the_refusal_retry_stays_inside_the_deadline(monkeypatch, connects):
    # A refusal that takes the whole deadline leaves no time for its retry.
    real_connect = socket.socket.connect

    def slow_refusal(sock, address):
        time.sleep(0.5)
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", slow_refusal)
    started = time.monotonic()
    with pytest.raises(ProviderUnreachable):
        _post(ProviderHTTP("fake", timeout=0.4), f"http://127.0.0.1:{free_port()}/x")
    assert time.monotonic() - started < 0.9


def test_no_log_line_carries_the_url_of_a_retried_call(caplog, connects):
    caplog.set_level(logging.DEBUG)
    port = free_port()
    with pytest.raises(ProviderUnreachable):
        _post(ProviderHTTP("kaleyra", timeout=5), f"http://127.0.0.1:{port}/v1/{KALEYRA_SID}/messages")
    assert len(connects) == 2  # the call was retried, the case urllib3 warns about
    for record in caplog.records:
        assert KALEYRA_SID not in record.getMessage(), (record.name, record.getMessage())
        assert "/messages" not in record.getMessage()


def test_the_service_logging_keeps_urllib3_below_error_quiet():
    from sms_service.logs import configure_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        configure_logging("debug")
        for name in ("urllib3", "urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection",
                     "urllib3.response", "urllib3.poolmanager"):
            assert logging.getLogger(name).getEffectiveLevel() >= logging.ERROR, name
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_a_reset_while_waiting_for_the_answer_is_lost_not_unreachable():
    import struct

    class Resetting(DripProvider):
        def _play(self, conn, behaviour):
            # SO_LINGER 0: close() sends RST instead of FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with Resetting("hang") as server:
        with pytest.raises(ProviderUnavailable) as caught:
            _post(ProviderHTTP("fake", timeout=5), server.url("/x"))
    assert caught.value.message == LOST and server.requests == 1


def test_a_timeout_after_sending_stays_a_timeout():
    with DripProvider("hang") as server:
        with pytest.raises(ProviderTimeout):
            _post(ProviderHTTP("fake", timeout=0.3), server.url("/x"))


def test_unreachable_is_a_kind_of_unavailable_for_plugins_that_catch_the_parent():
    assert issubclass(ProviderUnreachable, ProviderUnavailable)

"""End to end: GET /messages under real gunicorn with several workers, on SQLite and Redis.

Every worker hashes receivers with the one key the deployment made in STORAGE_URI, so a
number finds its messages whichever worker stored them and whichever answers.
"""

from __future__ import annotations

import time

import pytest
import redis
import requests
from support.payloads import message
from support.service import Service

pytestmark = pytest.mark.e2e

KEY_A, KEY_B = "e2e-key-a-0123456789abcdef", "e2e-key-b-0123456789abcdef"


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_the_receiver_filter_and_the_scope_hold_across_workers(backend, request):
    env = {"SERVICE_PROVIDER": "console", "API_KEYS": f"{KEY_A},{KEY_B}", "RATE_LIMIT_MAX_REQUESTS": "10000"}
    if backend == "redis":
        env["STORAGE_URI"] = request.getfixturevalue("redis_uri")
    with Service(env, workers=3) as service:
        def send(key: str, number: str) -> str:
            answer = service.send({**message(), "receiver": number}, headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200, answer.text
            return answer.json()["sid"]

        to_a = [send(KEY_A, "+14155550171"), send(KEY_A, "+14155550172")]
        time.sleep(1.1)  # one receiver's exponential delay
        to_a.append(send(KEY_A, "+14155550171"))
        bob = send(KEY_B, "+14155550173")
        for _ in range(9):  # whichever worker answers
            answer = requests.get(f"{service.url}/messages", params={"receiver": "+14155550171"},
                                  headers={"Authorization": f"Bearer {KEY_A}"}, timeout=10)
            assert answer.status_code == 200, answer.text
            assert [m["sid"] for m in answer.json()["messages"]] == [to_a[2], to_a[0]]
        everything = requests.get(f"{service.url}/messages", headers={"Authorization": f"Bearer {KEY_A}"},
                                  timeout=10).json()
        assert {m["sid"] for m in everything["messages"]} == set(to_a)  # never Bob's
        bobs = requests.get(f"{service.url}/messages", headers={"Authorization": f"Bearer {KEY_B}"},
                            params={"receiver": "+14155550171"}, timeout=10).json()
        assert bobs == {"messages": [], "next": None}
        assert [m["sid"] for m in requests.get(f"{service.url}/messages", timeout=10,
                                               headers={"Authorization": f"Bearer {KEY_B}"}).json()["messages"]] \
            == [bob]
        assert "4155550171" not in service.log_text()  # the full number is never logged
    # ... nor stored: not in the SQLite file (and its WAL), not in any Redis value.
    stored = _stored_bytes(backend, service, request)
    assert b"+1***71" in stored  # the records were read: the masked number is there
    assert b"4155550171" not in stored


def _stored_bytes(backend: str, service: Service, request) -> bytes:
    if backend == "sqlite":
        return b"".join(path.read_bytes() for path in service.state_dir.rglob("*") if path.is_file())
    client = redis.Redis.from_url(request.getfixturevalue("redis_uri"))
    found = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        if kind == b"string":
            found.append(client.get(key))
        elif kind == b"zset":
            found += client.zrange(key, 0, -1)
        elif kind == b"hash":
            found += [b"%s=%s" % pair for pair in client.hgetall(key).items()]
        elif kind == b"list":
            found += client.lrange(key, 0, -1)
        found.append(key)
    assert found, "nothing stored at all?"
    return b"\n".join(found)

"""End to end: segment budgets and /estimate through real gunicorn, across workers and
instances sharing one Redis, and on the embedded SQLite store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support.payloads import message
from support.service import Service, twilio_env

pytestmark = pytest.mark.e2e

THREE_SEGMENTS = "a" * 400


def _post_all(work):
    def post(item):
        url, route, payload = item
        return requests.post(f"{url}{route}", json=payload, timeout=30)

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(post, work))


def test_budget_holds_across_instances_and_workers_with_retry_after(redis_uri, fake_provider_server, fake_provider):
    env = {**twilio_env(fake_provider_server.url), "STORAGE_URI": redis_uri, "SEGMENT_BUDGETS": "US=10/1h,*=5/1h"}
    with Service(env, workers=2) as first, Service(env, workers=2) as second:
        answers = _post_all([((first if i % 2 else second).url, "/send", message(body=THREE_SEGMENTS))
                             for i in range(24)])
        statuses = [a.status_code for a in answers]
        assert statuses.count(200) == 3 and statuses.count(429) == 21, statuses
        assert fake_provider.count() == 3  # the provider saw only what the budget allowed
        refused = next(a for a in answers if a.status_code == 429)
        assert refused.json()["statusCode"] == "429"
        assert refused.json()["message"] == ("receiver: the segment budget for US (10 segments per 1h) has no "
                                             "room for this message of 3 segments")
        assert 3590 <= int(refused.headers["Retry-After"]) <= 3600
        # /estimate, on either instance, agrees and consumes nothing: the last segment is still free.
        estimate = requests.post(f"{second.url}/estimate", json=message(body="x"), timeout=30)
        assert estimate.status_code == 200
        assert estimate.json() == {"numSegments": "1", "encoding": "GSM-7", "country": "US",
                                   "numberType": "FIXED_LINE_OR_MOBILE", "provider": "twilio"}
        too_many = requests.post(f"{first.url}/estimate", json=message(body="a" * 200), timeout=30)
        assert too_many.status_code == 429 and "segment budget for US" in too_many.json()["message"]
        assert first.send(message(body="x")).status_code == 200
        assert fake_provider.count() == 4
        metrics = requests.get(f"{first.url}/-/metrics", timeout=10).text  # its last send saw 10 of 10
    # The 80% warning went out once for the deployment, from whichever worker crossed it.
    warnings = [r for service in (first, second) for r in service.log_records()
                if r.get("message", "").startswith("segment budget of US")]
    assert len(warnings) == 1 and warnings[0]["level"] == "WARNING", warnings
    gauges = [line for line in metrics.splitlines() if line.startswith("sms_segment_budget_use_ratio{")]
    assert 'sms_segment_budget_use_ratio{country="US"} 1.0' in gauges, gauges
    assert {line.split('"')[1] for line in gauges} <= {"US", "other"}  # a bounded label set


def test_budget_on_the_embedded_store_with_two_workers(fake_provider_server, fake_provider):
    env = {**twilio_env(fake_provider_server.url), "SEGMENT_BUDGETS": "GB=4/1h"}
    with Service(env, workers=2) as service:
        answers = _post_all([(service.url, "/send", message(receiver=f"+4474001234{i:02d}", body="a" * 200))
                             for i in range(10)])
        statuses = [a.status_code for a in answers]
        assert statuses.count(200) == 2 and statuses.count(429) == 8, statuses
        assert fake_provider.count() == 2
        assert all(int(a.headers["Retry-After"]) >= 3500 for a in answers if a.status_code == 429)


# -- review fixes: an outage does not drain the budget --------------------------------------


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_sends_that_sent_nothing_give_their_segments_back_across_workers(
        store, request, fake_provider_server, fake_provider):
    env = {**twilio_env(fake_provider_server.url), "SEGMENT_BUDGETS": "US=3/1d"}
    if store == "redis":
        env["STORAGE_URI"] = request.getfixturevalue("redis_uri")
    with Service(env, workers=2) as service:
        fake_provider.mode = "auth"  # the provider refuses our credentials: nothing goes out
        # One after another (in flight, a send holds its segments: concurrent ones may meet a full budget).
        refused = [service.send(message(body="a" * 200)) for _ in range(6)]
        assert [a.status_code for a in refused] == [502] * 6, [a.json() for a in refused]
        fake_provider.mode = "error500"  # the SMS may have gone: its 2 segments stay counted
        assert service.send(message(body="a" * 200)).status_code == 502
        fake_provider.mode = "ok"
        assert service.send(message(body="x")).status_code == 200  # 3 of 3
        full = service.send(message(body="x"))
        assert full.status_code == 429 and "segment budget for US" in full.json()["message"], full.json()
        assert 86_300 <= int(full.headers["Retry-After"]) <= 86_400 + 865  # SQLite: a bucket of 1/100 more

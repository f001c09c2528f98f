"""Overload of the real prediction service (gunicorn, 2 workers): admission control sheds what it
cannot take, and nothing else gives.

A small in-flight limit and many concurrent clients, some sending big batches: every answer is a
200 or a 503 with ``Retry-After`` and a JSON error, no request fails otherwise, the workers are the
same processes at the end, their memory stays bounded, and ``/metrics`` counts every refusal the
clients saw. Behind its front (haproxy, as `lambdaml speed up` runs it), the front sheds what gunicorn
has no slot or queue place for, with the same JSON 503 and ``Retry-After``, and answers so while
gunicorn is down. No timing is asserted.
"""

from __future__ import annotations

import collections
import threading
import time

import psutil
import pytest
import requests

from deploy.local.stack import Stack
from tests.integration.private_speed import TRIP, private_speed, workers

pytestmark = pytest.mark.integration

CLIENTS = 24
SECONDS = 8.0
RSS_GROWTH_LIMIT = 64 * 2**20


@pytest.fixture(scope="module")
def service(stack, settings, tmp_path_factory):
    with private_speed(settings, tmp_path_factory.mktemp("load-runtime"), port=18110, workers=2, threads=8,
                       max_in_flight=2, max_batch_trips=1000, max_pending_trips=1000, retry_after_s=2) as s:
        yield s


def rejected_total(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{url}/metrics", timeout=10).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "lambdaml_requests_rejected"
               for sample in family.samples if sample.name == "lambdaml_requests_rejected_total")


def overload(url: str, seconds: float, messages: collections.Counter | None = None,
             clients: int = CLIENTS) -> tuple[collections.Counter, list[str]]:
    """``clients`` closed-loop clients for ``seconds``; status counts and every contract breach seen (and, into
    ``messages``, the error text of each 503)."""
    codes: collections.Counter = collections.Counter()
    breaches: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(n: int) -> None:
        session = requests.Session()
        i = 0
        while not stop.is_set():
            i += 1
            size = 600 if n % 6 == 0 else 20  # a few clients send big batches: they fill the batcher's queue
            body = {"trips": [dict(TRIP, trip_id=f"c{n}-{i}-{j}") for j in range(size)]}
            try:
                r = session.post(f"{url}/v1/predict", json=body, timeout=30)
            except requests.RequestException as exc:
                with lock:
                    breaches.append(f"client {n}: {exc!r}")
                continue
            problem = None
            if r.status_code == 200:
                if len(r.json()["predictions"]) != size:
                    problem = "200 without a prediction per trip"
            elif r.status_code == 503:
                body = r.json()
                if not r.headers.get("Retry-After", "").isdigit():
                    problem = f"503 without Retry-After: {dict(r.headers)}"
                elif not body.get("error") or body.get("retry_after_s") != int(r.headers["Retry-After"]):
                    problem = f"503 without a JSON error and retry_after_s: {body}"
                elif messages is not None:
                    with lock:
                        messages[body["error"]] += 1
            else:
                problem = f"{r.status_code}: {r.text[:200]}"
            with lock:
                codes[r.status_code] += 1
                if problem:
                    breaches.append(problem)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(60)
    return codes, breaches


def test_overload_is_refused_with_retry_after_and_nothing_else_gives(service):
    url = service.speed.url
    overload(url, 2.0)  # warm-up: allocations of a busy worker happen before the baseline
    before = {p.pid: p.memory_info().rss for p in workers(service)}
    assert len(before) == 2
    rejected_before = rejected_total(url)

    codes, breaches = overload(url, SECONDS)

    assert breaches == [], breaches[:10]
    assert set(codes) <= {200, 503}, codes
    assert codes[200] > 0 and codes[503] > 0, codes  # it was overloaded, and it still served
    after = {p.pid: p.memory_info().rss for p in workers(service)}
    assert set(after) == set(before), "a worker was replaced during the overload"
    growth = {pid: after[pid] - before[pid] for pid in before}
    assert all(g < RSS_GROWTH_LIMIT for g in growth.values()), growth
    assert rejected_total(url) - rejected_before == codes[503]  # every refusal counted, by the workers that made it
    # Once the load is gone, every request is served again.
    assert all(requests.post(f"{url}/v1/predict", json=dict(TRIP, trip_id=f"after-{i}"), timeout=10).status_code
               == 200 for i in range(10))


@pytest.fixture(scope="module")
def fronted(stack, settings, tmp_path_factory):
    """The service behind its front (haproxy), as `lambdaml speed up` runs it, with a small gunicorn and a short
    queue in the front, so that the front sheds first."""
    with private_speed(settings, tmp_path_factory.mktemp("front-runtime"), port=18112, app_port=18113, workers=1,
                       threads=4, max_in_flight=4, front_proxy=True, front_max_queue=2, front_queue_timeout_ms=200,
                       retry_after_s=2) as s:
        yield s


def test_the_front_sheds_past_gunicorn_with_the_same_contract(fronted):
    from deploy.local.speed import front_refusal

    url = fronted.speed.url
    before = {p.pid for p in workers(fronted)}
    rejected_before = rejected_total(fronted.speed.app_url)
    messages: collections.Counter = collections.Counter()

    codes, breaches = overload(url, SECONDS / 2, messages, clients=32)

    assert breaches == [], breaches[:10]  # no transport error, and every 503 is JSON with Retry-After
    assert set(codes) <= {200, 503}, codes
    front_said = front_refusal(fronted)["error"]
    by_gunicorn = rejected_total(fronted.speed.app_url) - rejected_before
    print(f"front: {dict(codes)}; 503s by the front {messages[front_said]}, by gunicorn {by_gunicorn:.0f}")
    assert codes[200] > 0 and messages[front_said] > 0, (codes, messages)
    assert messages[front_said] + by_gunicorn == codes[503], (messages, by_gunicorn)
    assert {p.pid for p in workers(fronted)} == before
    assert all(requests.post(f"{url}/v1/predict", json=dict(TRIP, trip_id=f"front-after-{i}"), timeout=10).status_code
               == 200 for i in range(10))


def test_the_front_answers_503_with_retry_after_while_gunicorn_is_down(fronted):
    import os
    import signal

    from deploy.local.speed import PredictionAPI, wait_for_model

    api = PredictionAPI(fronted)
    master = api.proc.pid()
    procs = [psutil.Process(master), *psutil.Process(master).children(recursive=True)]
    os.killpg(master, signal.SIGKILL)  # the master and its workers, by the pid we started
    psutil.wait_procs(procs, timeout=10)
    try:
        r = requests.post(f"{fronted.speed.url}/v1/predict", json=dict(TRIP, trip_id="front-down"), timeout=10)
        assert r.status_code == 503 and r.headers.get("Retry-After") == "2", (r.status_code, r.headers)
        assert r.json()["retry_after_s"] == 2
    finally:
        Stack(fronted, ["speed-api"], catalog=(PredictionAPI,), with_dependencies=False).up()
    assert wait_for_model(fronted, 90) == "v1"
    assert requests.post(f"{fronted.speed.url}/v1/predict", json=dict(TRIP, trip_id="front-back"),
                         timeout=10).status_code == 200

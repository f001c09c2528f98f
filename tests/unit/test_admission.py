"""Admission control of the prediction service: the in-flight limit, the bounded batcher queue, and
what an overloaded worker answers (503, Retry-After, JSON, a counted rejection). No services.

The model's forward pass is held on a gate so that requests stay in flight for as long as a test needs.
"""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import ValidationError

from core.registry import sha256
from core.settings import Settings, SpeedSettings
from speed import metrics
from speed.admission import Admission, Overloaded
from speed.app import create_app
from speed.batcher import MicroBatcher
from speed.predictor import ModelHolder, build
from tests.model_factory import artifact_bytes
from tests.polling import wait_until

TRIP = {"trip_id": "t-1", "pickup_ts": "2026-01-05T08:30:00", "PULocationID": 161, "DOLocationID": 236,
        "passenger_count": 1, "trip_distance": 2.1, "VendorID": 2}


def rejected(reason: str) -> float:
    return metrics.REJECTED.labels(reason)._value.get()


# ------------------------------------------------------------------------------------------------ Admission
def test_admission_admits_up_to_the_limit_and_frees_places():
    a = Admission(2)
    assert a.try_enter() and a.try_enter()
    assert not a.try_enter()  # full: refused, nothing taken
    assert a.in_flight == 2
    a.leave()
    assert a.try_enter() and a.in_flight == 2
    a.leave()
    a.leave()
    assert a.in_flight == 0
    with pytest.raises(RuntimeError):
        a.leave()
    with pytest.raises(ValueError):
        Admission(0)


def test_admission_never_exceeds_its_limit_under_contention():
    a = Admission(3)
    seen, lock, refused = [], threading.Lock(), [0]

    def worker():
        for _ in range(300):
            if a.try_enter():
                with lock:
                    seen.append(a.in_flight)
                time.sleep(0.0001)
                a.leave()
            else:
                with lock:
                    refused[0] += 1

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(seen) <= 3 and a.in_flight == 0
    assert refused[0] > 0  # the limit was reached, so the check above had something to hold


# ------------------------------------------------------------------------------------------------ batcher queue
class Gate:
    """A ``run`` for MicroBatcher that doubles its items once the gate opens, and records what it scored."""

    def __init__(self):
        self.open = threading.Event()
        self.scored: list[int] = []

    def __call__(self, items):
        self.open.wait(5)
        self.scored.extend(items)
        return [x * 2 for x in items], "ctx"


def test_batcher_refuses_past_max_pending_and_recovers():
    gate = Gate()
    b = MicroBatcher(gate, max_size=4, max_wait_s=0.0, max_pending=6, inline=False)
    first = b.submit([1, 2, 3, 4])
    second = b.submit([5, 6])
    assert b.pending == 6
    with pytest.raises(Overloaded) as exc:
        b.submit([7])
    assert exc.value.reason == "queue" and "6" in exc.value.message
    assert b.pending == 6  # a refusal takes nothing
    gate.open.set()
    assert first.result(5) == ([2, 4, 6, 8], "ctx") and second.result(5) == ([10, 12], "ctx")
    wait_until(lambda: b.pending == 0)
    assert b.submit([7]).result(5) == ([14], "ctx")
    b.close()


def test_batcher_drops_a_cancelled_request_unscored_and_frees_its_place():
    gate = Gate()
    b = MicroBatcher(gate, max_size=2, max_wait_s=0.0, max_pending=10, inline=False)
    running = b.submit([1, 2])  # taken by the batching thread, held at the gate
    wait_until(lambda: running.running())
    given_up = b.submit([3, 4])
    assert given_up.cancel()
    kept = b.submit([5])
    gate.open.set()
    assert running.result(5)[0] == [2, 4] and kept.result(5)[0] == [10]
    wait_until(lambda: b.pending == 0)
    assert sorted(gate.scored) == [1, 2, 5]
    b.close()


def test_batcher_without_max_pending_is_unbounded():
    gate = Gate()
    gate.open.set()
    b = MicroBatcher(gate, max_size=8, max_wait_s=0.0)
    assert [f.result(5)[0] for f in [b.submit([i]) for i in range(50)]] == [[i * 2] for i in range(50)]
    b.close()


def test_settings_refuse_a_queue_smaller_than_a_batch():
    with pytest.raises(ValidationError, match="max_pending_trips"):
        SpeedSettings(max_batch_trips=100, max_pending_trips=50)
    assert SpeedSettings(max_batch_trips=100, max_pending_trips=100).max_pending_trips == 100


# ------------------------------------------------------------------------------------------------ the service
@pytest.fixture(scope="module")
def holder() -> ModelHolder:
    data = artifact_bytes(1)
    h = ModelHolder()
    h.swap(build("trip_duration", "trip_duration:1.1.0-test", sha256(data), "mem://1", data))
    return h


def gated_app(holder: ModelHolder, **speed):
    """The app with its batcher's forward pass held on a gate (opened by default after 5 s at the latest)."""
    settings = Settings(speed={"max_body_bytes": 65536, "max_batch_trips": 8, "batch_max_wait_ms": 0.0, **speed})
    app = create_app(settings, holder=holder, watch=False)
    svc = app.extensions["lambdaml"]
    gate = threading.Event()
    if svc.batcher is not None:
        svc.batcher.inline = False  # every request goes through the queue, to the gate
        score = svc.batcher._run

        def held(items):
            gate.wait(5)
            return score(items)

        svc.batcher._run = held
    return app, svc, gate


def post_in_thread(app, body, out: list) -> threading.Thread:
    def call():
        r = app.test_client().post("/v1/predict", json=body)
        out.append((r.status_code, r.headers.get("Retry-After"), r.json))

    t = threading.Thread(target=call)
    t.start()
    return t


def test_past_max_in_flight_a_request_gets_503_with_retry_after_and_is_counted(holder):
    app, svc, gate = gated_app(holder, max_in_flight=2, retry_after_s=3)
    client = app.test_client()
    answers: list = []
    threads = [post_in_thread(app, dict(TRIP, trip_id=f"held-{i}"), answers) for i in range(2)]
    wait_until(lambda: svc.admission.in_flight == 2)
    before = rejected("in_flight")
    r = client.post("/v1/predict", json=TRIP)
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "3"
    assert r.json["retry_after_s"] == 3 and r.json["error"].startswith("overloaded")
    assert rejected("in_flight") == before + 1
    # Probes and metrics are not admitted: they answer while the worker is full.
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    assert "lambdaml_requests_rejected_total" in client.get("/metrics").data.decode()
    gate.set()
    for t in threads:
        t.join(10)
    assert sorted(a[0] for a in answers) == [200, 200]
    assert svc.admission.in_flight == 0
    assert client.post("/v1/predict", json=TRIP).status_code == 200  # places are free again


def test_refused_and_failed_requests_give_their_place_back(holder):
    app, svc, gate = gated_app(holder, max_in_flight=1)
    gate.set()
    client = app.test_client()
    for body in ({"trips": []}, {"trips": [TRIP] * 9}, {"PULocationID": "x"}):
        assert client.post("/v1/predict", json=body).status_code in (400, 413)
    assert client.post("/v1/predict", data=b"{nope", content_type="application/json").status_code == 400
    assert client.post("/v1/predict/features", json={"trip_ids": []}).status_code == 400
    assert svc.admission.in_flight == 0
    assert client.post("/v1/predict", json=TRIP).status_code == 200


def test_past_max_pending_trips_a_request_gets_503_and_is_counted(holder):
    app, svc, gate = gated_app(holder, max_in_flight=8, max_pending_trips=8)
    answers: list = []
    full = post_in_thread(app, {"trips": [dict(TRIP, trip_id=f"q-{i}") for i in range(8)]}, answers)
    wait_until(lambda: svc.batcher.pending == 8)
    before = rejected("queue")
    r = app.test_client().post("/v1/predict", json=TRIP)
    assert (r.status_code, r.headers.get("Retry-After")) == (503, "1")
    assert "waiting to be scored" in r.json["error"]
    assert rejected("queue") == before + 1
    gate.set()
    full.join(10)
    assert answers[0][0] == 200 and len(answers[0][2]["predictions"]) == 8


def test_a_timed_out_request_gets_503_with_retry_after_and_is_not_scored(holder):
    app, svc, gate = gated_app(holder, request_timeout_s=0.2, max_in_flight=4)
    answers: list = []
    first = post_in_thread(app, dict(TRIP, trip_id="first"), answers)  # holds the batching thread at the gate
    wait_until(lambda: svc.batcher.pending == 1)
    r = app.test_client().post("/v1/predict", json=dict(TRIP, trip_id="late"))
    assert r.status_code == 503 and r.headers["Retry-After"] == "1" and "retry" in r.json["error"]
    first.join(10)  # the first one timed out too
    assert answers[0][0] == 503
    gate.set()
    wait_until(lambda: svc.batcher.pending == 0)
    assert svc.admission.in_flight == 0


def test_overload_of_the_unbatched_service_is_refused_too(holder):
    app, svc, gate = gated_app(holder, micro_batching=False, max_in_flight=1)
    assert svc.batcher is None
    assert svc.admission.try_enter()  # the one place is taken
    r = app.test_client().post("/v1/predict/features", json={"trip_ids": ["a"], "features": {}})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    svc.admission.leave()

"""The prediction service in-process (Flask test client): contract, bad input, hot swap, fuzzing. No services."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from core.events import TripRequest
from core.settings import Settings
from speed import metrics, watcher
from speed.app import create_app
from speed.batcher import MicroBatcher
from speed.predictor import ModelHolder, build, predict
from tests.model_factory import announcement, artifact_bytes
from tests.polling import wait_until

NAME = "trip_duration"
TRIP = {"trip_id": "t-1", "pickup_ts": "2026-01-05T08:30:00", "PULocationID": 161, "DOLocationID": 236,
        "passenger_count": 1, "trip_distance": 2.1, "VendorID": 2}


def loaded(seed: int, version: str | None = None):
    data = artifact_bytes(seed)
    from core.registry import sha256

    return build(NAME, version or f"{NAME}:1.{seed}.0-test", sha256(data), f"mem://{seed}", data)


@pytest.fixture(scope="module")
def holder() -> ModelHolder:
    h = ModelHolder()
    h.swap(loaded(1))
    return h


def make_client(holder: ModelHolder | None, **speed):
    settings = Settings(speed={"max_body_bytes": 4096, "max_batch_trips": 8, "batch_max_wait_ms": 1.0, **speed})
    return create_app(settings, holder=holder, watch=False).test_client()


@pytest.fixture(scope="module")
def client(holder):
    return make_client(holder)


def test_not_ready_until_a_model_is_loaded():
    c = make_client(ModelHolder())
    assert c.get("/healthz").status_code == 200
    assert c.get("/readyz").status_code == 503
    r = c.post("/v1/predict", json=TRIP)
    assert r.status_code == 503 and "model" in r.json["error"]


def test_single_and_batch_predictions_match_the_model(client, holder):
    one = client.post("/v1/predict", json=TRIP)
    assert one.status_code == 200, one.json
    assert one.json["trip_id"] == "t-1" and one.json["model_version"] == holder.current.version
    trips = [dict(TRIP, trip_id=f"t-{i}", PULocationID=100 + i, trip_distance=0.5 + i) for i in range(5)]
    many = client.post("/v1/predict", json={"trips": trips})
    assert many.status_code == 200
    assert [p["trip_id"] for p in many.json["predictions"]] == [t["trip_id"] for t in trips]
    expected = predict(holder.current, [TripRequest.model_validate(t) for t in trips])
    got = np.array([p["predicted_duration_s"] for p in many.json["predictions"]])
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert len(set(got.round(3))) > 1  # the features reach the model
    assert client.get("/readyz").json == {"ready": True, "model_version": holder.current.version,
                                          "models": {"taxi": holder.current.version, "bike": None}}
    assert client.get("/v1/models/current").json["version"] == holder.current.version


def test_small_batches_are_scored_with_numpy_and_large_ones_with_torch_to_the_same_numbers(holder):
    import dataclasses

    from speed.predictor import NUMPY_MAX_ROWS

    model = holder.current
    assert model.device == "cpu" and model.cpu_runner is not None and model.runner is not None
    module_only = dataclasses.replace(model, runner=None, cpu_runner=None)
    for n in (1, NUMPY_MAX_ROWS, NUMPY_MAX_ROWS + 1):
        trips = [TripRequest.model_validate(dict(TRIP, trip_id=f"t-{i}", PULocationID=1 + i % 263,
                                                 DOLocationID=263 - i % 263, trip_distance=0.1 + i))
                 for i in range(n)]
        np.testing.assert_allclose(predict(model, trips), predict(module_only, trips), rtol=1e-5)


@pytest.mark.parametrize(("body", "field"), [
    ({k: v for k, v in TRIP.items() if k != "PULocationID"}, "PULocationID"),
    (dict(TRIP, DOLocationID=999), "DOLocationID"),
    (dict(TRIP, trip_distance=-1), "trip_distance"),
    (dict(TRIP, pickup_ts="yesterday"), "pickup_ts"),
    (dict(TRIP, pickup_ts="1900-01-01T00:00:00"), "pickup_ts"),
    (dict(TRIP, trip_id=""), "trip_id"),
    ({"trips": [TRIP, dict(TRIP, DOLocationID="x")]}, "trips[1].DOLocationID"),
    ({"trips": []}, "trips"),
    ({"trips": {"a": 1}}, "trips"),
    ([TRIP], "body"),
])
def test_invalid_input_is_a_400_naming_the_field(client, body, field):
    r = client.post("/v1/predict", json=body)
    assert r.status_code == 400, r.json
    assert r.json["field"] == field, r.json


def feature_body(trips: list[dict]) -> dict:
    from speed.predictor import request_columns
    from workloads.taxi import features

    cols = features.compute_numpy(request_columns([TripRequest.model_validate(t) for t in trips]))
    return {"trip_ids": [t["trip_id"] for t in trips], "features": {k: v.tolist() for k, v in cols.items()}}


def test_feature_endpoint_agrees_with_the_trip_endpoint(client):
    trips = [dict(TRIP, trip_id=f"f-{i}", DOLocationID=10 + i, trip_distance=1.0 + i) for i in range(4)]
    by_trip = client.post("/v1/predict", json={"trips": trips}).json["predictions"]
    by_features = client.post("/v1/predict/features", json=feature_body(trips))
    assert by_features.status_code == 200, by_features.json
    assert by_features.json["predictions"] == by_trip


@pytest.mark.parametrize(("mutate", "field", "status"), [
    (lambda b: b["features"].pop("hour"), "features.hour", 400),
    (lambda b: b["features"].__setitem__("pu_zone", [999]), "features.pu_zone", 400),
    (lambda b: b["features"].__setitem__("log_distance", ["x"]), "features.log_distance", 400),
    (lambda b: b["features"].__setitem__("passengers", [1, 2]), "features.passengers", 400),
    (lambda b: b.__setitem__("trip_ids", []), "trip_ids", 400),
    (lambda b: b.__setitem__("trip_ids", ["a"] * 9), "trip_ids", 413),
])
def test_feature_endpoint_rejects_bad_columns(client, mutate, field, status):
    body = feature_body([TRIP])
    mutate(body)
    r = client.post("/v1/predict/features", json=body)
    assert (r.status_code, r.json["field"]) == (status, field), r.json


def test_not_json_is_a_400(client):
    r = client.post("/v1/predict", data=b"{nope", content_type="application/json")
    assert r.status_code == 400 and r.json["field"] == "body"


def test_size_limits_are_413(client):
    assert client.post("/v1/predict", json={"trips": [TRIP] * 9}).status_code == 413
    big = client.post("/v1/predict", data=b" " * 5000 + json.dumps(TRIP).encode(), content_type="application/json")
    assert big.status_code == 413 and big.json["field"] == "body"


def test_api_key(holder):
    c = make_client(holder, api_key="s3cret")
    assert c.post("/v1/predict", json=TRIP).status_code == 401
    assert c.post("/v1/predict", json=TRIP, headers={"X-API-Key": "wrong"}).status_code == 401
    assert c.post("/v1/predict", json=TRIP, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert c.get("/healthz").status_code == 200  # probes stay open


def test_metrics_and_openapi(client):
    client.post("/v1/predict", json=TRIP)
    text = client.get("/metrics").data.decode()
    for name in ("lambdaml_http_requests_total", "lambdaml_http_request_duration_seconds_bucket",
                 "lambdaml_batch_trips_bucket", "lambdaml_predictions_total"):
        assert name in text
    # Labelled by the model the request was for; an endpoint of no model has model="".
    assert 'lambdaml_predictions_total{model="trip_duration"}' in text
    assert any(line.startswith("lambdaml_http_requests_total{") and 'model="trip_duration"' in line
               and 'status="200"' in line for line in text.splitlines())
    assert 'lambdaml_batch_trips_bucket{le="1.0",model="trip_duration"}' in text
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.") and "/v1/predict" in spec["paths"]
    assert "PULocationID" in spec["components"]["schemas"]["TripRequest"]["properties"]


def test_swap_is_atomic_and_a_corrupt_artifact_is_refused():
    h = ModelHolder()
    settings = Settings()
    good = artifact_bytes(2)
    assert watcher.apply(settings, h, announcement(NAME, "v2", "mem://2", good), fetch=lambda uri: good)
    assert h.current.version == "v2"
    before = metrics.MODEL_REFUSED.labels(NAME, "sha256")._value.get()
    corrupt = bytearray(artifact_bytes(3))
    corrupt[len(corrupt) // 2] ^= 0xFF
    bad = announcement(NAME, "v3", "mem://3", artifact_bytes(3))
    assert not watcher.apply(settings, h, bad, fetch=lambda uri: bytes(corrupt))
    assert h.current.version == "v2" and "v3" in h.last_error
    assert metrics.MODEL_REFUSED.labels(NAME, "sha256")._value.get() == before + 1
    garbage = b"not a model at all"
    assert not watcher.apply(settings, h, announcement(NAME, "v4", "mem://4", garbage), fetch=lambda uri: garbage)
    assert h.current.version == "v2" and metrics.MODEL_REFUSED.labels(NAME, "corrupt")._value.get() >= 1
    assert not watcher.accept({"name": NAME, "stage": "candidate"}, NAME)


def test_requests_during_swaps_never_fail():
    h = ModelHolder()
    h.swap(loaded(4, "a"))
    c = make_client(h)
    models = [loaded(5, "b"), loaded(6, "c")]
    failures, versions, stop = [], set(), threading.Event()

    def hammer():
        while not stop.is_set():
            r = c.post("/v1/predict", json={"trips": [TRIP, dict(TRIP, trip_id="t-2")]})
            if r.status_code != 200:
                failures.append(r.status_code)
            else:
                versions.add(r.json["model_version"])

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(40):
        h.swap(models[i % 2])
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert failures == [] and versions <= {"a", "b", "c"} and len(versions) >= 2


def test_micro_batcher_merges_concurrent_requests():
    calls: list[int] = []
    gate = threading.Event()

    def run(items):
        gate.wait(2)
        calls.append(len(items))
        return [x * 2 for x in items], "ctx"

    b = MicroBatcher(run, max_size=64, max_wait_s=0.05, inline=False)
    futures = [b.submit([i, i + 100]) for i in range(10)]
    gate.set()
    results = [f.result(5) for f in futures]
    assert results[3] == ([6, 206], "ctx")
    assert sum(calls) == 20 and len(calls) < 10  # merged into fewer forward passes
    over = [b.submit(list(range(40))) for _ in range(3)]
    assert all(len(f.result(5)[0]) == 40 for f in over)
    assert max(calls) <= 64  # a batch never exceeds max_size and a request is never split
    b.close()


def test_a_lone_request_does_not_wait_and_announced_ones_are_waited_for():
    calls: list[list[int]] = []

    def run(items):
        calls.append(list(items))
        return [x * 2 for x in items], "ctx"

    b = MicroBatcher(run, max_size=64, max_wait_s=1.0)
    t0 = time.monotonic()
    assert b.submit([1]).result(5) == ([2], "ctx")
    assert time.monotonic() - t0 < 0.5  # nobody announced: scored at once, not after max_wait_s

    b.announce()  # a second request is being read ...
    first = b.submit([2])
    time.sleep(0.1)
    assert not first.done()  # ... so the batch waits for it
    second = b.submit([3], announced=True)
    assert first.result(5) == ([4], "ctx") and second.result(5) == ([6], "ctx")
    assert calls[-1] == [2, 3] and b.announced == 0  # one forward pass for both

    b.announce()  # announced, then refused before it reached the batcher
    t0 = time.monotonic()
    third = b.submit([4])
    time.sleep(0.05)
    b.withdraw()
    assert third.result(5) == ([8], "ctx") and time.monotonic() - t0 < 0.6
    assert b.announced == 0
    b.close()


def test_a_lone_request_is_scored_in_its_own_thread_and_later_ones_share_a_pass():
    gate = threading.Event()
    calls: list[tuple[str, list[int]]] = []

    def run(items):
        if items == [0]:
            gate.wait(5)
        calls.append((threading.current_thread().name, list(items)))
        return [x * 2 for x in items], "ctx"

    b = MicroBatcher(run, max_size=64, max_wait_s=0.0)
    lone: list = []
    t = threading.Thread(target=lambda: lone.append(b.submit([0]).result(5)), name="request-0")
    t.start()
    wait_until(lambda: b.pending == 1)  # scored inline, held at the gate
    later = [b.submit([i]) for i in range(1, 6)]  # a pass is running: these queue
    time.sleep(0.05)
    assert not any(f.done() for f in later)
    gate.set()
    t.join(5)
    assert lone == [([0], "ctx")] and [f.result(5)[0] for f in later] == [[2], [4], [6], [8], [10]]
    assert calls[0] == ("request-0", [0])  # in the caller's thread, no hand-off
    assert calls[1] == ("micro-batcher", [1, 2, 3, 4, 5])  # queued during it: one pass of the batching thread
    b.close()


def test_with_no_wait_an_announced_request_does_not_send_a_lone_one_to_the_batching_thread():
    threads: list[str] = []

    def run(items):
        threads.append(threading.current_thread().name)
        return [x * 2 for x in items], "ctx"

    b = MicroBatcher(run, max_size=64, max_wait_s=0.0)
    b.announce()  # another request is being read: with no wait, the batch would not wait for it anyway
    assert b.submit([1]).result(5) == ([2], "ctx")
    assert threads == [threading.current_thread().name]  # scored in the caller's thread: no hand-off
    b.withdraw()
    waiting = MicroBatcher(run, max_size=64, max_wait_s=0.05)
    waiting.announce()  # with a wait, the same request goes to the batching thread, which waits for company
    assert waiting.submit([2]).result(5) == ([4], "ctx") and threads[-1] == "micro-batcher"
    waiting.withdraw()
    b.close()
    waiting.close()


def test_no_inline_pass_jumps_ahead_of_a_batch_waiting_for_its_turn():
    calls: list[tuple[str, list[int]]] = []

    def run(items):
        calls.append((threading.current_thread().name, list(items)))
        return [x * 2 for x in items], "ctx"

    b = MicroBatcher(run, max_size=64, max_wait_s=0.0)
    for _ in range(20):  # each round: a pass runs, a request queues behind it, then one more comes as it ends
        calls.clear()
        b._pass_lock.acquire()  # a forward pass is running
        queued = b.submit([1])  # so this one queues; the batching thread takes it and waits for the pass lock
        wait_until(lambda: b._batch_waiting)
        b._pass_lock.release()  # the pass ends ...
        late = b.submit([2])  # ... and a request comes at once: it must not be scored before the one waiting
        assert queued.result(5) == ([2], "ctx") and late.result(5) == ([4], "ctx")
        assert calls[0] == ("micro-batcher", [1]) or calls[0] == ("micro-batcher", [1, 2])
    b.close()


def test_bad_input_withdraws_its_announcement(client):
    batcher = client.application.extensions["lambdaml"].batcher
    assert client.post("/v1/predict", json={"trip_id": "x"}).status_code == 400
    assert client.post("/v1/predict", json=TRIP).status_code == 200
    assert batcher.announced == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
field_values = st.one_of(json_values, st.datetimes(min_value=dt.datetime(1, 1, 2)).map(lambda d: d.isoformat()),
                         st.integers(-5, 300), st.floats(-1e6, 1e6))
trip_like = st.fixed_dictionaries({}, optional={k: field_values for k in TRIP})
features_like = st.fixed_dictionaries({"trip_ids": st.one_of(json_values, st.lists(st.text(max_size=4), max_size=3)),
                                       "features": st.dictionaries(st.sampled_from(["hour", "pu_zone", "x"]),
                                                                   st.lists(field_values, max_size=3))})
batch_like = st.fixed_dictionaries({"trips": st.one_of(json_values, st.lists(trip_like, max_size=3))})


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(json_values, trip_like, batch_like, st.binary(max_size=64), features_like),
       path=st.sampled_from(["/v1/predict", "/v1/predict/features"]))
def test_fuzz_never_5xx(client, body, path):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = client.post(path, data=raw, content_type="application/json")
    assert r.status_code < 500, (r.status_code, r.json, raw[:200])
    assert r.status_code in (200, 400, 413)

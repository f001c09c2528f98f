"""One prediction service, many models (in-process, Flask test client): each workload at /v1/<workload>/predict
with its own request model, answer and holder; swapping or refusing one model never disturbs another."""

from __future__ import annotations

import threading

import pytest

from core.registry import sha256
from core.settings import Settings
from core.workload import load
from speed import watcher
from speed.app import create_app
from speed.predictor import ModelHolder, ModelSet, build
from tests.model_factory import announcement, artifact_bytes

TAXI, BIKE = load("taxi"), load("bike")
TRIP = dict(TAXI.example, trip_id="t-1")
RIDE = dict(BIKE.example, ride_id="r-1")


def loaded(workload, seed: int, version: str):
    data = artifact_bytes(seed, label_mean=-2.0 if workload is BIKE else 6.5, workload=workload.name)
    return build(workload.model_name, version, sha256(data), f"mem://{seed}", data, workload=workload)


@pytest.fixture
def service():
    settings = Settings(speed={"max_body_bytes": 8192, "max_batch_trips": 8, "batch_max_wait_ms": 1.0})
    holders = {"taxi": ModelHolder(), "bike": ModelHolder()}
    holders["taxi"].swap(loaded(TAXI, 1, "trip_duration:1"))
    holders["bike"].swap(loaded(BIKE, 2, "bike_overtime:1"))
    app = create_app(settings, holders=holders, watch=False)
    return settings, holders, app


def test_each_workload_is_served_at_its_own_path_with_its_own_contract(service):
    _, holders, app = service
    c = app.test_client()
    one = c.post("/v1/bike/predict", json=RIDE)
    assert one.status_code == 200, one.json
    assert set(one.json) == {"ride_id", "overtime_probability", "model_version"}
    assert one.json["ride_id"] == "r-1" and 0.0 < one.json["overtime_probability"] < 1.0
    assert one.json["model_version"] == "bike_overtime:1"
    rides = [dict(RIDE, ride_id=f"r-{i}", member_casual=("member", "casual")[i % 2],
                  start_station_id=f"{5000 + i}.01") for i in range(6)]
    many = c.post("/v1/bike/predict", json={"rides": rides})
    assert [p["ride_id"] for p in many.json["predictions"]] == [r["ride_id"] for r in rides]
    assert len({p["overtime_probability"] for p in many.json["predictions"]}) > 1  # the inputs reach the model

    taxi_new, taxi_old = c.post("/v1/taxi/predict", json=TRIP), c.post("/v1/predict", json=TRIP)
    assert taxi_new.json == taxi_old.json and taxi_new.json["model_version"] == "trip_duration:1"
    assert c.get("/v1/bike/models/current").json["workload"] == "bike"
    assert c.get("/readyz").json["models"] == {"taxi": "trip_duration:1", "bike": "bike_overtime:1"}


def test_bad_input_names_the_workloads_field_and_an_unknown_workload_is_404(service):
    c = service[2].test_client()
    bad = c.post("/v1/bike/predict", json=dict(RIDE, rideable_type="tandem"))
    assert bad.status_code == 400 and bad.json["field"] == "rideable_type"
    batch = c.post("/v1/bike/predict", json={"rides": [RIDE, dict(RIDE, started_at="yesterday")]})
    assert batch.status_code == 400 and batch.json["field"] == "rides[1].started_at"
    assert c.post("/v1/bike/predict", json=TRIP).json["field"] == "ride_id"  # a trip is not a ride
    assert c.post("/v1/bike/predict", json={"rides": list(range(9))}).status_code == 413
    unknown = c.post("/v1/boat/predict", json=RIDE)
    assert unknown.status_code == 404 and unknown.json["field"] == "workload"
    assert "bike" in unknown.json["error"] and "taxi" in unknown.json["error"]
    assert c.get("/v1/boat/models/current").status_code == 404
    assert c.get("/readyz?workload=bike").json["ready"] is True


def test_a_workload_without_a_model_is_503_while_the_other_serves():
    settings = Settings(speed={"batch_max_wait_ms": 1.0})
    holders = {"taxi": ModelHolder()}
    holders["taxi"].swap(loaded(TAXI, 1, "trip_duration:1"))
    c = create_app(settings, holders=holders, watch=False).test_client()
    assert c.post("/v1/predict", json=TRIP).status_code == 200
    r = c.post("/v1/bike/predict", json=RIDE)
    assert r.status_code == 503 and "no bike model" in r.json["error"]
    assert c.get("/readyz").status_code == 200 and c.get("/readyz?workload=bike").status_code == 503


def test_swapping_one_model_under_load_fails_no_request_on_either(service):
    settings, holders, app = service
    models = ModelSet(settings, holders)
    failures: list[str] = []
    seen: dict[str, set] = {"taxi": set(), "bike": set()}
    stop = threading.Event()

    def client(path: str, body: dict, workload: str) -> None:
        c = app.test_client()
        while not stop.is_set():
            r = c.post(path, json=body)
            if r.status_code != 200:
                failures.append(f"{path} {r.status_code} {r.json}")
            else:
                seen[workload].add(r.json.get("model_version"))

    threads = [threading.Thread(target=client, args=a) for a in (
        ("/v1/predict", {"trips": [TRIP] * 3}, "taxi"), ("/v1/taxi/predict", TRIP, "taxi"),
        ("/v1/bike/predict", {"rides": [RIDE] * 3}, "bike"), ("/v1/bike/predict", RIDE, "bike"))]
    for t in threads:
        t.start()
    try:
        for i in range(3, 7):  # bike swaps four times, and one corrupt bike artifact is refused
            data = artifact_bytes(i, label_mean=-2.0, workload="bike")
            ann = announcement(BIKE.model_name, f"bike_overtime:{i}", f"mem://{i}", data)
            assert models.workload_of(ann["name"]) is BIKE
            assert watcher.apply(settings, holders["bike"], ann, fetch=lambda uri, d=data: d, workload=BIKE)
        corrupt = bytearray(artifact_bytes(9, workload="bike"))
        corrupt[len(corrupt) // 3] ^= 0xFF
        bad = announcement(BIKE.model_name, "bike_overtime:9", "mem://9", artifact_bytes(9, workload="bike"))
        assert not watcher.apply(settings, holders["bike"], bad, fetch=lambda uri: bytes(corrupt), workload=BIKE)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert seen["taxi"] == {"trip_duration:1"}
    assert len(seen["bike"]) >= 2 and holders["bike"].current.version == "bike_overtime:6"
    assert holders["taxi"].current.version == "trip_duration:1"


def test_a_taxi_artifact_announced_for_bike_is_refused_and_bike_keeps_serving(service):
    settings, holders, _ = service
    data = artifact_bytes(5, workload="taxi")
    ann = announcement(BIKE.model_name, "bike_overtime:wrong", "mem://5", data)
    assert not watcher.apply(settings, holders["bike"], ann, fetch=lambda uri: data, workload=BIKE)
    assert holders["bike"].current.version == "bike_overtime:1"
    assert "feature" in holders["bike"].last_error


def test_the_watcher_accepts_every_served_model_and_nothing_else():
    models = ModelSet(Settings())
    assert models.by_model == {"trip_duration": "taxi", "bike_overtime": "bike"}
    assert watcher.accept({"name": "bike_overtime", "stage": "production"}, set(models.by_model))
    assert not watcher.accept({"name": "bike_overtime", "stage": "candidate"}, set(models.by_model))
    assert not watcher.accept({"name": "other", "stage": "production"}, set(models.by_model))
    only_taxi = ModelSet(Settings(speed={"workloads": ["taxi"]}))
    assert set(only_taxi.holders) == {"taxi"}

"""The replay plan and its schedule, for the taxi workload and the bike one: pure, no services."""

from __future__ import annotations

import datetime as dt
import json
import math
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from batch.replay import MALFORMED_KINDS, MALFORMED_PREFIX, Message, build_plan, plan_day, schedule
from core import contract
from core.events import TripCompleted, TripRequest, request_model_of
from core.workload import load
from workloads.bike import schema as bike_schema
from workloads.bike.generate import generate_day as generate_rides
from workloads.taxi import tlc
from workloads.taxi.generate import generate_day

DAY = dt.date(2026, 1, 5)


def by_kind(messages: list[Message], kind: str) -> list[Message]:
    return [m for m in messages if m.kind == kind]


def test_plan_is_deterministic_for_a_seed():
    a, b = plan_day(DAY, 500, seed=3), plan_day(DAY, 500, seed=3)
    assert len(a) == 500
    assert a.trip_ids() == b.trip_ids()
    assert list(schedule(a, rate=100)) == list(schedule(b, rate=100))
    other = plan_day(DAY, 500, seed=4)
    assert not np.array_equal(a.event_us, other.event_us)
    assert a.trip_ids()[0].startswith("20260105-3-")


def test_every_request_is_valid_ordered_by_pickup_and_unique():
    plan = plan_day(DAY, 2000)
    requests = [TripRequest.model_validate_json(m.value) for m in by_kind(list(schedule(plan, rate=100)), "request")]
    assert len(requests) == 2000
    assert [r.trip_id for r in requests] == plan.trip_ids()
    assert len(set(plan.trip_ids())) == 2000
    pickups = [r.pickup_ts for r in requests]
    assert pickups == sorted(pickups)
    assert all(p.date() == DAY for p in pickups)


def test_rows_that_would_fail_a_request_are_skipped():
    good = {"VendorID": 2, tlc.PICKUP: dt.datetime(2026, 1, 5, 8), tlc.DROPOFF: dt.datetime(2026, 1, 5, 8, 20),
            "passenger_count": None, "trip_distance": 3.1, "PULocationID": 263, "DOLocationID": 48}
    bad = [
        {"PULocationID": None}, {"PULocationID": 0}, {"DOLocationID": 300}, {"trip_distance": -1.0},
        {"PULocationID": 264}, {"DOLocationID": 265}, {"trip_distance": 0.0},
        {"trip_distance": 501.0}, {"trip_distance": math.nan}, {"passenger_count": 12}, {tlc.PICKUP: None},
        {tlc.DROPOFF: dt.datetime(2026, 1, 5, 7, 59)}, {tlc.PICKUP: dt.datetime(2026, 1, 3, 8)},
    ]
    rows = [good, *({**good, **change} for change in bad), {**good, "trip_distance": 150.0}]
    table = tlc.normalize(pa.Table.from_pylist(rows))
    plan = build_plan(table, DAY, seed=1)
    assert list(plan.row) == [0, len(rows) - 1]  # null passengers, impossible speed: valid requests
    assert plan.request(0).passenger_count is None


def test_dirty_generated_rows_never_become_requests():
    table = generate_day(DAY, 3000, seed=5, dirty_share=0.3)
    plan = build_plan(table, DAY, seed=5)
    assert 0.7 * 3000 <= len(plan) < 3000
    for j in range(len(plan)):
        TripRequest.model_validate(plan.request(j).model_dump(mode="json"))
        assert plan.completed(j).duration_s > 0


def test_completions_follow_their_request_with_the_trips_duration():
    table = generate_day(DAY, 1000, seed=7).to_pandas()
    plan = build_plan(generate_day(DAY, 1000, seed=7), DAY, seed=7)
    messages = list(schedule(plan, rate=50, time_scale=60))
    sent_at = {m.key: m.offset_s for m in by_kind(messages, "request")}
    completions = by_kind(messages, "completed")
    assert len(completions) == len(plan) > 950
    assert [m.offset_s for m in messages] == sorted(m.offset_s for m in messages)
    for m in completions:
        done = TripCompleted.model_validate_json(m.value)
        row = table.iloc[int(m.key.rsplit("-", 1)[1])]
        assert done.trip_id == m.key
        assert done.dropoff_ts.replace(tzinfo=None) == row[tlc.DROPOFF]
        assert done.duration_s == (row[tlc.DROPOFF] - row[tlc.PICKUP]).total_seconds() > 0
        assert m.offset_s == pytest.approx(sent_at[m.key] + done.duration_s / 60)
    # A typical trip completes a few seconds after its request at the default time scale.
    default = by_kind(list(schedule(plan, rate=50)), "completed")
    delays = [m.offset_s - sent_at[m.key] for m in default]
    assert 1.0 < float(np.median(delays)) < 10.0


def test_completions_immediately_come_right_after_their_request():
    plan = plan_day(DAY, 50)
    messages = list(schedule(plan, rate=10, time_scale=math.inf))
    kinds = [m.kind for m in messages]
    assert kinds == ["request", "completed"] * 50
    assert all(messages[i].key == messages[i + 1].key for i in range(0, 100, 2))


def test_requests_are_spaced_one_over_rate_apart():
    plan = plan_day(DAY, 300)
    requests = [m for m in schedule(plan, rate=40, malformed_share=0.1) if m.kind != "completed"]
    assert len(requests) == 330
    assert np.allclose(np.diff([m.offset_s for m in requests]), 1 / 40)
    assert requests[0].offset_s == 0.0


def test_malformed_requests_do_not_validate_and_are_recognizable():
    plan = plan_day(DAY, 200)
    messages = list(schedule(plan, rate=100, malformed_share=0.1))
    malformed = by_kind(messages, "malformed")
    assert len(malformed) == 20
    assert len(by_kind(messages, "request")) == len(by_kind(messages, "completed")) == 200
    assert {m.key.removeprefix(MALFORMED_PREFIX).split("-")[0] for m in malformed} == set(MALFORMED_KINDS)
    for m in malformed:
        assert m.key.startswith(MALFORMED_PREFIX)
        with pytest.raises(ValueError):  # json.JSONDecodeError and pydantic's ValidationError are ValueErrors
            TripRequest.model_validate(json.loads(m.value))
        if "missing_key" not in m.key:
            assert m.key.encode() in m.value
    # Malformed messages are spread among the valid ones and carry no completion.
    requests = [m for m in messages if m.kind != "completed"]
    positions = [i for i, m in enumerate(requests) if m.kind == "malformed"]
    assert positions[0] < len(requests) // 4 and positions[-1] > 3 * len(requests) // 4
    assert not {m.key for m in malformed} & {m.key for m in by_kind(messages, "completed")}


def test_shift_changes_the_durations():
    base, shifted = plan_day(DAY, 3000), plan_day(DAY, 3000, shift=True)
    assert np.median(shifted.duration_s) > 1.2 * np.median(base.duration_s)
    assert set(base.trip_ids()).isdisjoint(shifted.trip_ids())


@pytest.mark.parametrize("workload", ["taxi", "bike"])
def test_every_malformed_kind_fails_the_workloads_request_model(workload):
    plan = plan_day(DAY, 100, seed=9, workload=workload)
    model = request_model_of(workload)
    malformed = by_kind(list(schedule(plan, rate=100, malformed_share=0.5)), "malformed")
    assert len(malformed) == 50
    assert {m.key.removeprefix(MALFORMED_PREFIX).split("-")[0] for m in malformed} == set(MALFORMED_KINDS)
    for m in malformed:
        with pytest.raises(ValueError):
            model.model_validate(json.loads(m.value))


@pytest.mark.parametrize("request_", [
    contract.Request("OnlyText", (contract.key("k"), contract.timestamp("t"), contract.text("name", 8))),
    contract.Request("OnlyNumber", (contract.key("k"), contract.timestamp("t"), contract.number("x", 0.0, 1.0))),
    contract.Request("KeyAndTime", (contract.key("k"), contract.timestamp("t"))),
], ids=lambda r: r.model_name)
def test_malformed_kinds_are_derived_from_any_contract(request_):
    from batch.replay import _spoil

    model = contract.request_model(request_)
    body = {"k": "key-1", "t": "2026-01-05T08:00:00Z", "name": "dock", "x": 0.5}
    model.model_validate(body)
    for kind in MALFORMED_KINDS[2:]:  # not_json and missing_key need no field of the contract
        name, value = _spoil(request_, kind)
        with pytest.raises(ValueError):
            model.model_validate({**body, name: value})


def test_bike_plan_gives_valid_rides_with_positive_durations():
    bike = load("bike")
    plan = plan_day(DAY, 1000, seed=3, workload="bike")
    assert len(plan) == 1000 and plan.key_name == bike.request.key
    assert plan.keys() == plan_day(DAY, 1000, seed=3, workload="bike").keys()
    assert len(set(plan.keys())) == 1000 and plan.keys()[0].startswith("20260105-3-")
    RideRequest = request_model_of("bike")
    RideEnded = contract.outcome_model(bike.request, bike.outcome)
    messages = list(schedule(plan, rate=100))
    requests = [RideRequest.model_validate_json(m.value) for m in by_kind(messages, "request")]
    assert [getattr(r, bike.request.key) for r in requests] == plan.keys()
    starts = [getattr(r, bike.request.event_time) for r in requests]
    assert starts == sorted(starts) and all(t.date() == DAY for t in starts)
    outcomes = {m.key: RideEnded.model_validate_json(m.value) for m in by_kind(messages, "completed")}
    assert set(outcomes) == set(plan.keys())
    for r, start in zip(requests, starts, strict=True):
        done = outcomes[getattr(r, bike.request.key)]
        value = getattr(done, bike.outcome.value)
        assert value > 0
        assert getattr(done, bike.outcome.time).replace(tzinfo=dt.UTC) - start == dt.timedelta(seconds=value)


def test_bike_rows_that_would_fail_a_request_are_skipped():
    good = {"ride_id": "A1", "rideable_type": "classic_bike", "started_at": dt.datetime(2026, 1, 5, 8),
            "ended_at": dt.datetime(2026, 1, 5, 8, 20), "start_station_id": "6140.05", "member_casual": "member",
            "start_lat": 40.7, "start_lng": -74.0}
    bad = [
        {"start_station_id": None}, {"start_station_id": " "}, {"start_station_id": "x" * 33},
        {"rideable_type": "scooter"}, {"member_casual": "Subscriber"}, {"started_at": None}, {"ended_at": None},
        {"ended_at": dt.datetime(2026, 1, 5, 7, 59)}, {"started_at": dt.datetime(2026, 1, 3, 8)},
    ]
    # The service area and the longest ride are the batch validator's to judge: valid requests, kept.
    rows = [good, *({**good, **change} for change in bad), {**good, "start_lat": 0.0, "start_lng": 0.0},
            {**good, "ended_at": dt.datetime(2026, 1, 7, 8)}]
    table = bike_schema.normalize(pa.Table.from_pylist(rows))
    plan = build_plan(table, DAY, seed=1, workload="bike")
    assert list(plan.row) == [0, len(rows) - 2, len(rows) - 1]
    assert plan.request(0).start_station_id == "6140.05" and plan.completed(2).duration_s == 2 * 86_400


def test_dirty_generated_rides_never_become_requests():
    plan = build_plan(generate_rides(DAY, 3000, seed=5, dirty_share=0.3), DAY, seed=5, workload="bike")
    assert 0.7 * 3000 <= len(plan) < 3000
    RideRequest = request_model_of("bike")
    for j in range(len(plan)):
        RideRequest.model_validate(plan.request(j).model_dump(mode="json"))
        assert plan.completed(j).duration_s > 0


def test_bad_arguments_are_rejected():
    plan = plan_day(DAY, 10)
    with pytest.raises(ValueError, match="count"):
        plan_day(DAY, 0)
    for kwargs, match in (({"rate": 0}, "rate"), ({"rate": 1, "time_scale": 0}, "time_scale"),
                          ({"rate": 1, "malformed_share": 1.5}, "malformed_share")):
        with pytest.raises(ValueError, match=match):
            schedule(plan, **kwargs)


def test_cli_help_describes_replay():
    out = subprocess.run([sys.executable, "-m", "core.cli", "replay", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    for option in ("--count", "--rate", "--day", "--seed", "--shift", "--time-scale", "--malformed-share",
                   "--workload"):
        assert option in out.stdout


def one_message_at_a_time(plan, rate: float, time_scale: float, n_malformed: int):
    """The schedule as the replay first computed it: a heap of pending outcomes, a model dumped per message."""
    import heapq

    from batch.replay import _json

    slots = len(plan) + n_malformed
    rng = np.random.default_rng([plan.seed, plan.day.toordinal(), int(plan.shift), 1])
    is_malformed = np.zeros(slots, dtype=bool)
    is_malformed[rng.choice(slots, size=n_malformed, replace=False)] = True
    pending: list[tuple[float, int]] = []
    valid = malformed = 0
    for slot in range(slots):
        offset = slot / rate
        while pending and pending[0][0] <= offset:
            due, j = heapq.heappop(pending)
            yield Message(due, "completed", plan.key(j), _json(plan.completed(j)))
        if is_malformed[slot]:
            yield Message(offset, "malformed", *plan.malformed(malformed))
            malformed += 1
        else:
            yield Message(offset, "request", plan.key(valid), _json(plan.request(valid)))
            heapq.heappush(pending, (offset + plan.duration_s[valid] / time_scale, valid))
            valid += 1
    while pending:
        due, j = heapq.heappop(pending)
        yield Message(due, "completed", plan.key(j), _json(plan.completed(j)))


@pytest.mark.parametrize("workload", ["taxi", "bike"])
@pytest.mark.parametrize(("rate", "time_scale", "malformed"),
                         [(100, 300, 60), (math.inf, math.inf, 0), (50, 60, 0), (7, 1, 6), (math.inf, 300, 30)])
def test_schedule_built_a_column_at_a_time_is_the_message_by_message_one(workload, rate, time_scale, malformed):
    """Same messages, same order, same bytes: chunked, columnar building changes nothing a consumer sees."""
    plan = plan_day(DAY, 6000, seed=11, shift=rate == 7, workload=workload)  # more than one chunk
    got = list(schedule(plan, rate=rate, time_scale=time_scale, malformed_share=malformed / 6000))
    assert got == list(one_message_at_a_time(plan, rate, time_scale, malformed))

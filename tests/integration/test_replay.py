"""Replay: paced trips (and bike rides) land on the real broker, requests and outcomes matched by key."""

from __future__ import annotations

import datetime as dt
import math
import time
from dataclasses import dataclass

import pytest
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE
from confluent_kafka.admin import AdminClient

from batch.replay import MALFORMED_PREFIX, ReplayError, plan_day, replay
from core import contract
from core import kafka as k
from core.events import TripCompleted, TripRequest, request_model_of
from core.workload import load

pytestmark = pytest.mark.integration

DAY = dt.date(2026, 1, 5)


@dataclass
class Received:
    key: str
    value: bytes
    timestamp_ms: int


@pytest.fixture
def replay_settings(stack, settings, unique):
    """The settings with requests and completed topics of this test only."""
    topics = {"trip_requests_topic": f"it.replay.requests.{unique}",
              "trip_completed_topic": f"it.replay.completed.{unique}"}
    own = settings.model_copy(update={"kafka": settings.kafka.model_copy(update=topics)})
    k.ensure_topics(own)
    yield own
    admin = AdminClient(k.client_config(settings))
    for deleted in admin.delete_topics(list(topics.values())).values():
        deleted.result(timeout=30)


def consume(settings, topic: str, expected: int, group: str) -> list[Received]:
    consumer = k.consumer(settings, group_id=group)
    consumer.subscribe([topic])
    received: list[Received] = []
    deadline = time.monotonic() + 60
    try:
        while len(received) < expected and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            kind, ts = msg.timestamp()
            assert kind != TIMESTAMP_NOT_AVAILABLE
            received.append(Received(msg.key().decode(), msg.value(), ts))
        # Nothing beyond what was expected arrives.
        extra = consumer.poll(2.0)
        assert extra is None or extra.error(), f"unexpected message {extra.key()!r}"
    finally:
        consumer.close()
    return received


def test_replay_delivers_requests_and_completions_keyed_by_trip(replay_settings, unique):
    summary = replay(replay_settings, DAY, count=200, rate=2000, seed=11, time_scale=20_000, malformed_share=0.05,
                     echo=lambda _: None)
    assert (summary.requests, summary.completions, summary.malformed) == (200, 200, 10)

    topics = replay_settings.kafka
    requests = consume(replay_settings, topics.trip_requests_topic, 210, f"it-replay-req-{unique}")
    completed = consume(replay_settings, topics.trip_completed_topic, 200, f"it-replay-done-{unique}")
    assert len(requests) == 210 and len(completed) == 200

    valid = [r for r in requests if not r.key.startswith(MALFORMED_PREFIX)]
    trip_ids = set(plan_day(DAY, 200, seed=11).trip_ids())
    assert {r.key for r in valid} == trip_ids and len(valid) == 200
    for r in valid:
        assert TripRequest.model_validate_json(r.value).trip_id == r.key
    for r in requests:
        if r.key.startswith(MALFORMED_PREFIX):
            with pytest.raises(ValueError):
                TripRequest.model_validate_json(r.value)

    request_ts = {r.key: r.timestamp_ms for r in valid}
    for c in completed:
        done = TripCompleted.model_validate_json(c.value)
        assert done.trip_id == c.key and c.key in trip_ids
        assert c.timestamp_ms >= request_ts[c.key]
    assert {c.key for c in completed} == trip_ids


def test_replay_is_paced_at_the_requested_rate(replay_settings, unique):
    progress: list[str] = []
    summary = replay(replay_settings, DAY, count=50, rate=100, seed=12, time_scale=math.inf, echo=progress.append)
    # 50 requests 10 ms apart span 0.49 s; without pacing they would all leave within a few ms.
    assert 0.4 <= summary.elapsed_s < 5.0
    assert 60 <= summary.achieved_rate <= 110

    requests = consume(replay_settings, replay_settings.kafka.trip_requests_topic, 50, f"it-replay-rate-{unique}")
    stamps = sorted(r.timestamp_ms for r in requests)
    assert len(stamps) == 50
    assert 400 <= stamps[-1] - stamps[0] <= 2000  # the broker saw them spread out too


@pytest.fixture
def bike_settings(stack, settings, unique):
    """The settings with the bike workload's requests and completed topics of this test only."""
    own_topics = {"requests": f"it.replay.bike.requests.{unique}", "completed": f"it.replay.bike.completed.{unique}"}
    kafka = settings.kafka.model_copy(update={"workload_topics": {**settings.kafka.workload_topics,
                                                                  "bike": own_topics}})
    own = settings.model_copy(update={"kafka": kafka})
    k.ensure_topics(own)
    yield own
    admin = AdminClient(k.client_config(settings))
    for deleted in admin.delete_topics(list(own_topics.values())).values():
        deleted.result(timeout=30)


def test_replay_of_another_workload_uses_its_topics_and_models(bike_settings, unique):
    bike = load("bike")
    summary = replay(bike_settings, DAY, count=50, rate=1000, seed=13, time_scale=20_000, malformed_share=0.1,
                     echo=lambda _: None, workload="bike")
    assert (summary.requests, summary.completions, summary.malformed) == (50, 50, 5)

    topics = bike_settings.kafka.for_workload("bike")
    requests = consume(bike_settings, topics.requests, 55, f"it-replay-bike-req-{unique}")
    outcomes = consume(bike_settings, topics.completed, 50, f"it-replay-bike-done-{unique}")
    assert len(requests) == 55 and len(outcomes) == 50

    RideRequest = request_model_of("bike")
    RideEnded = contract.outcome_model(bike.request, bike.outcome)
    keys = set(plan_day(DAY, 50, seed=13, workload="bike").keys())
    valid = [r for r in requests if not r.key.startswith(MALFORMED_PREFIX)]
    assert {r.key for r in valid} == keys and len(valid) == 50
    for r in valid:
        assert getattr(RideRequest.model_validate_json(r.value), bike.request.key) == r.key
    for r in requests:
        if r.key.startswith(MALFORMED_PREFIX):
            with pytest.raises(ValueError):
                RideRequest.model_validate_json(r.value)
    for o in outcomes:
        ended = RideEnded.model_validate_json(o.value)
        assert getattr(ended, bike.request.key) == o.key and getattr(ended, bike.outcome.value) > 0
    assert {o.key for o in outcomes} == keys


def test_missing_topic_is_a_clear_error(stack, settings, unique):
    absent = settings.model_copy(update={"kafka": settings.kafka.model_copy(
        update={"trip_requests_topic": f"it.replay.absent.{unique}"})})
    with pytest.raises(ReplayError, match=f"it.replay.absent.{unique}"):
        replay(absent, DAY, count=5, rate=1000, echo=lambda _: None)

"""The serving sync on the real stack: Kafka topics to MySQL rows and zone x hour views, exactly once in effect.

Each test uses private topics, its own consumer name, trip ids with a unique prefix, a metrics source of its
own and pickup hours in a far-off year that no other data uses, and deletes all of it at the end.
"""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pytest
from confluent_kafka.admin import AdminClient
from sqlalchemy import text
from typer.testing import CliRunner

from core import kafka
from core.cli import app
from core.db import engine
from core.task import log_loss
from core.views import RealTimeViews
from core.workload import load
from serving import sync
from tests.airflow_api import AirflowAPI
from workloads.bike.schema import overtime_numpy

pytestmark = pytest.mark.integration

HOURS = 3
ZONES = (4, 132, 236)


class SyncEnv:
    """Private topics and identifiers, a producer, and what MySQL should hold once everything is synced."""

    def __init__(self, settings, unique: str):
        self.settings = settings
        self.consumer = f"it-sync-{unique}"
        self.prefix = f"it-{unique}-"
        self.source = f"it.sync.{unique}"
        # A private hour range in 2090..2097 (pickup years up to 2099 are valid).
        self.first_hour = dt.datetime(2090, 1, 1) + dt.timedelta(hours=int(unique[:6], 16) % (8 * 365 * 24))
        self.rng = random.Random(unique)
        self.producer = kafka.producer(settings)
        self.eng = engine(settings)
        self.predictions: dict[str, dict] = {}  # the last delivery of each trip
        self.outcomes: dict[str, dict] = {}
        self.metrics: dict[tuple, tuple[float, str]] = {}  # (source, name, ts): (value, tags_json)
        self.sent = 0

    # ------------------------------------------------------------------ producing
    def _send(self, topic: str, key: str, value: bytes) -> None:
        self.producer.produce(topic, key=key.encode(), value=value)
        self.sent += 1

    def flush(self) -> None:
        assert self.producer.flush(30) == 0

    def _ts(self, ts: dt.datetime) -> str:
        stamp = ts.isoformat(timespec="milliseconds")
        return stamp + ("Z" if self.rng.random() < 0.5 else "+00:00")

    def predict(self, n: int, start: int = 0) -> list[str]:
        """Predictions for trips ``start..start+n-1`` in the private zones and hours."""
        ids = []
        for i in range(start, start + n):
            trip_id = f"{self.prefix}{i:05d}"
            pickup = self.first_hour + dt.timedelta(seconds=self.rng.randrange(HOURS * 3600))
            self.deliver(trip_id, pickup, self.rng.choice(ZONES))
            ids.append(trip_id)
        return ids

    def deliver(self, trip_id: str, pickup: dt.datetime, zone: int, predicted: float | None = None) -> None:
        """One delivery of a trip's prediction; a later delivery of the same trip replaces it."""
        if predicted is None:
            predicted = round(self.rng.uniform(120, 3600), 3)
        scored = pickup + dt.timedelta(seconds=1, microseconds=self.rng.randrange(10**6))
        value = {"schema_version": 1, "trip_id": trip_id, "model_version": "trip_duration:it",
                 "predicted_duration_s": predicted, "event_ts": self._ts(pickup), "scored_ts": self._ts(scored),
                 "pickup_ts": self._ts(pickup), "PULocationID": zone, "DOLocationID": self.rng.randint(1, 265),
                 "passenger_count": self.rng.choice([None, 1, 2, 3]),
                 "trip_distance": round(self.rng.uniform(0, 20), 2)}
        self.predictions[trip_id] = value
        self._send(self.settings.kafka.trip_predictions_topic, trip_id, kafka.encode(value))

    def redeliver(self, trip_ids: list[str]) -> None:
        """The stream scored these trips again (restart): same trip and inputs, a new score."""
        for trip_id in trip_ids:
            old = self.predictions[trip_id]
            pickup = sync.parse_timestamp(old["pickup_ts"], "pickup_ts")
            self.deliver(trip_id, pickup, old["PULocationID"], predicted=old["predicted_duration_s"] + 7.5)

    def complete(self, trip_ids: list[str]) -> None:
        for trip_id in trip_ids:
            duration = round(self.rng.uniform(60, 4000), 3)
            value = {"schema_version": 1, "trip_id": trip_id, "duration_s": duration,
                     "dropoff_ts": self._ts(self.first_hour + dt.timedelta(hours=HOURS, seconds=duration))}
            self.outcomes[trip_id] = value
            self._send(self.settings.kafka.trip_completed_topic, trip_id, kafka.encode(value))

    def metric(self, n: int) -> None:
        for i in range(n):
            ts = self.first_hour + dt.timedelta(minutes=i)
            value = {"schema_version": 1, "source": self.source, "name": "it.rows", "value": float(i),
                     "tags": {"i": str(i)}, "ts": self._ts(ts)}
            self.metrics[(self.source, "it.rows", ts)] = (float(i), f'{{"i":"{i}"}}')
            self._send(self.settings.kafka.metrics_topic, self.source, kafka.encode(value))

    def malformed(self) -> None:
        k = self.settings.kafka
        self._send(k.trip_predictions_topic, "bad", b"{not json")
        self._send(k.trip_predictions_topic, "bad", kafka.encode({"trip_id": f"{self.prefix}bad", "PULocationID": 1}))
        self._send(k.trip_completed_topic, "bad", kafka.encode({"trip_id": f"{self.prefix}bad", "duration_s": "x"}))
        self._send(k.metrics_topic, "bad", b"[]")

    # ------------------------------------------------------------------ MySQL
    def query(self, sql: str, **params) -> list[tuple]:
        with self.eng.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]

    def snapshot(self, with_write_times: bool = True) -> dict[str, list[tuple]]:
        """Every row this test owns; with_write_times adds zone_hour_stats.updated_at and trip_outcomes.synced_at."""
        last = self.first_hour + dt.timedelta(hours=HOURS + 1)
        stamp = ", {}" if with_write_times else ""
        return {
            "predictions": self.query(
                "SELECT trip_id, model_version, pu_location_id, do_location_id, passenger_count, trip_distance,"
                " pickup_ts, predicted_duration_s, actual_duration_s, scored_ts, completed_ts, event_ts"
                " FROM predictions_recent WHERE trip_id LIKE :p ORDER BY trip_id", p=self.prefix + "%"),
            "outcomes": self.query("SELECT trip_id, dropoff_ts, duration_s" + stamp.format("synced_at") +
                                   " FROM trip_outcomes WHERE trip_id LIKE :p ORDER BY trip_id", p=self.prefix + "%"),
            "stats": self.query("SELECT pu_location_id, hour_start, trips, ROUND(sum_predicted_s, 6), completed,"
                                " ROUND(sum_actual_s, 6), ROUND(sum_abs_error_s, 6)" + stamp.format("updated_at") +
                                " FROM zone_hour_stats WHERE hour_start >= :a AND hour_start < :b"
                                " ORDER BY pu_location_id, hour_start", a=self.first_hour, b=last),
            "metrics": self.query("SELECT source, name, ts, value, tags_json FROM serving_metrics WHERE source = :s"
                                  " ORDER BY ts", s=self.source),
        }

    def offsets(self, consumer: str | None = None) -> dict[tuple[str, int], int]:
        rows = self.query("SELECT topic, part, next_offset FROM sync_offsets WHERE consumer = :c",
                          c=consumer or self.consumer)
        return {(t, p): o for t, p, o in rows}

    def ends(self) -> dict[tuple[str, int], int]:
        consumer = kafka.consumer(self.settings, f"{self.consumer}-probe")
        try:
            marks = sync.watermarks(consumer, sync.topic_kinds(self.settings))
        finally:
            consumer.close()
        return {key: high for key, (_, high) in marks.items() if high}

    def delete_rows(self) -> None:
        last = self.first_hour + dt.timedelta(hours=HOURS + 1)
        with self.eng.begin() as conn:
            for sql, params in (
                ("DELETE FROM predictions_recent WHERE trip_id LIKE :p", {"p": self.prefix + "%"}),
                ("DELETE FROM trip_outcomes WHERE trip_id LIKE :p", {"p": self.prefix + "%"}),
                ("DELETE FROM zone_hour_stats WHERE hour_start >= :a AND hour_start < :b",
                 {"a": self.first_hour, "b": last}),
                ("DELETE FROM serving_metrics WHERE source = :s", {"s": self.source}),
                ("DELETE FROM sync_offsets WHERE consumer LIKE :c", {"c": self.consumer + "%"}),
            ):
                conn.execute(text(sql), params)

    # ------------------------------------------------------------------ expectations
    def expected_stats(self) -> list[tuple]:
        stats: dict[tuple[int, dt.datetime], list[float]] = {}
        for trip_id, p in self.predictions.items():
            pickup = sync.parse_timestamp(p["pickup_ts"], "pickup_ts")
            hour = pickup.replace(minute=0, second=0, microsecond=0)
            s = stats.setdefault((p["PULocationID"], hour), [0, 0, 0, 0, 0])
            s[0] += 1
            s[1] += p["predicted_duration_s"]
            if trip_id in self.outcomes:
                actual = self.outcomes[trip_id]["duration_s"]
                s[2] += 1
                s[3] += actual
                s[4] += abs(actual - p["predicted_duration_s"])
        return [(zone, hour, s[0], round(s[1], 6), s[2], round(s[3], 6), round(s[4], 6))
                for (zone, hour), s in sorted(stats.items())]

    def assert_synced(self) -> None:
        """MySQL holds exactly the last delivery of every trip, its outcome, the metrics and the exact views."""
        snap = self.snapshot(with_write_times=False)
        got = {r[0]: r for r in snap["predictions"]}
        assert set(got) == set(self.predictions)
        for trip_id, p in self.predictions.items():
            row = got[trip_id]
            pickup = sync.parse_timestamp(p["pickup_ts"], "x")
            assert row[1:8] == ("trip_duration:it", p["PULocationID"], p["DOLocationID"], p["passenger_count"],
                                p["trip_distance"], pickup, p["predicted_duration_s"])
            assert (row[9], row[11]) == (sync.parse_timestamp(p["scored_ts"], "x"), pickup)
            outcome = self.outcomes.get(trip_id)
            assert row[8] == (outcome["duration_s"] if outcome else None)
            assert row[10] == (sync.parse_timestamp(outcome["dropoff_ts"], "x") if outcome else None)
        assert snap["outcomes"] == [(t, sync.parse_timestamp(o["dropoff_ts"], "x"), o["duration_s"])
                                    for t, o in sorted(self.outcomes.items())]
        assert snap["metrics"] == [key + value for key, value in sorted(self.metrics.items(), key=lambda kv: kv[0][2])]
        assert snap["stats"] == self.expected_stats()

    def run(self, consumer: str | None = None, **kwargs) -> sync.SyncSummary:
        return sync.run(self.settings, consumer_name=consumer or self.consumer, **kwargs)


@pytest.fixture
def env(stack, settings, unique):
    topics = {f: f"it.{unique}.{getattr(settings.kafka, f)}"
              for f in ("trip_predictions_topic", "trip_completed_topic", "metrics_topic")}
    s = settings.model_copy(update={"kafka": settings.kafka.model_copy(update=topics)})
    assert sorted(kafka.ensure_topics(s)) == sorted(topics.values())
    sync_env = SyncEnv(s, unique)
    yield sync_env
    sync_env.delete_rows()
    sync_env.eng.dispose()
    AdminClient(kafka.client_config(s)).delete_topics(list(topics.values()))


def test_sync_is_exact_idempotent_and_incremental(env):
    trips = env.predict(60)
    env.redeliver(trips[:10])                # at-least-once upstream: re-scored trips
    env.complete(trips[5:40])
    env.complete([f"{env.prefix}late"])  # outcome first, prediction in round 2
    env.metric(5)
    env.malformed()
    env.flush()

    first = env.run(chunk_messages=25)
    k = env.settings.kafka
    assert first.messages == {k.trip_predictions_topic: 72, k.trip_completed_topic: 37, k.metrics_topic: 6}
    assert first.malformed == {k.trip_predictions_topic: 2, k.trip_completed_topic: 1, k.metrics_topic: 1}
    assert first.chunks >= 115 // 25
    assert first.rows["zone_hour_stats"] > 0
    env.assert_synced()
    assert env.offsets() == env.ends()

    before = env.snapshot()
    again = env.run()
    assert again.messages == {} and again.chunks == 0
    assert env.snapshot() == before              # not one row, sum or timestamp moved

    more = env.predict(20, start=60)
    env.deliver(f"{env.prefix}late", env.first_hour + dt.timedelta(minutes=30), ZONES[0])
    env.redeliver(trips[30:35] + more[:3])
    env.complete(trips[40:60] + more[:10])
    env.metric(8)                                # 5 of them again: the same keys
    env.flush()
    third = env.run(chunk_messages=1000)
    assert third.messages == {k.trip_predictions_topic: 29, k.trip_completed_topic: 30, k.metrics_topic: 8}
    assert third.malformed == {}
    env.assert_synced()
    assert env.offsets() == env.ends()

    # A full replay from the beginning (a fresh consumer) redelivers everything: the views do not move.
    before = env.snapshot(with_write_times=False)
    replay = env.run(consumer=f"{env.consumer}-replay", chunk_messages=40)
    assert sum(replay.messages.values()) == env.sent
    assert env.snapshot(with_write_times=False) == before


def test_failed_chunk_rolls_back_and_rerun_ends_as_a_clean_run(env):
    trips = env.predict(90)
    env.redeliver(trips[::7])
    env.complete(trips[10:70])
    env.metric(6)
    env.malformed()
    env.flush()

    def fail_second_chunk(number: int, rows: sync.ChunkRows) -> None:
        if number == 2:
            raise RuntimeError("killed mid-run")

    with pytest.raises(RuntimeError, match="killed mid-run"):
        env.run(chunk_messages=30, before_commit=fail_second_chunk)
    after_failure = env.offsets()
    assert 0 < sum(after_failure.values()) == 30     # only the first chunk committed, rows and offsets together
    assert len(env.snapshot()["predictions"]) < len(env.predictions)

    resumed = env.run(chunk_messages=30)
    assert sum(resumed.messages.values()) == env.sent - 30
    env.assert_synced()
    recovered = env.snapshot(with_write_times=False)

    env.delete_rows()                                # now the same messages in one clean run
    clean = env.run(consumer=f"{env.consumer}-clean")
    assert sum(clean.messages.values()) == env.sent and clean.chunks == 1
    assert env.snapshot(with_write_times=False) == recovered
    env.assert_synced()


def test_serving_sync_dag_runs_green_through_airflow(stack, settings):
    """The scheduled DAG, triggered through the API, syncs the platform's own topics up to their ends."""
    api = AirflowAPI(settings)
    probe = kafka.consumer(settings, "it-sync-dag-probe")
    try:
        ends = {key: high for key, (_, high) in sync.watermarks(probe, sync.topic_kinds(settings)).items() if high}
    finally:
        probe.close()
    run = api.run_dag("serving_sync", timeout=300)
    assert run["state"] == "success", api.failed_tasks("serving_sync", run["dag_run_id"])
    bike = api.run_dag("bike_serving_sync", timeout=300)
    assert bike["state"] == "success", api.failed_tasks("bike_serving_sync", bike["dag_run_id"])
    eng = engine(settings)
    try:
        with eng.connect() as conn:
            stored = {(t, p): o for t, p, o in conn.execute(
                text("SELECT topic, part, next_offset FROM sync_offsets WHERE consumer = :c"), {"c": sync.CONSUMER})}
    finally:
        eng.dispose()
    for key, end in ends.items():
        assert stored.get(key, 0) >= end, key


def columns(eng, table: str) -> set[tuple[str, str, str]]:
    with eng.connect() as conn:
        return {tuple(r) for r in conn.execute(text(
            "SELECT column_name, column_type, is_nullable FROM information_schema.columns"
            " WHERE table_schema = DATABASE() AND table_name = :t"), {"t": table})}


def test_taxi_views_derived_from_its_contract_are_the_migrated_tables(stack, settings, unique):
    """The DDL derived from the taxi contract, made under private names, has exactly the columns (names, types,
    nullability) of the tables the migrations made before there were workloads."""
    views = RealTimeViews(load("taxi"))
    private = {t: f"it_{unique}_{t}" for t in (views.predictions, views.outcomes, views.hourly)}
    eng = engine(settings)
    try:
        with eng.begin() as conn:
            for statement in views.ddl():
                for table, name in private.items():
                    statement = statement.replace(f" {table} ", f" {name} ").replace(f"ix_{table}_", f"ix_{name}_")
                conn.exec_driver_sql(statement)
        for table, name in private.items():
            assert columns(eng, name) == columns(eng, table), table
            assert columns(eng, table)
    finally:
        with eng.begin() as conn:
            for name in private.values():
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        eng.dispose()


def test_bike_sync_joins_outcomes_to_labels_and_live_log_loss(stack, settings, unique):
    """The bike workload's views, derived from its contract: predictions with their rider-dependent label once the
    ride ends, and an hourly view whose sum of loss over completed rides is their log loss. Re-running moves
    nothing."""
    wl = load("bike")
    views = RealTimeViews(wl)
    topics = {role: f"it.{unique}.bike.{role}" for role in ("requests", "predictions", "completed", "dlq")}
    s = settings.model_copy(update={"kafka": settings.kafka.model_copy(
        update={"workload_topics": {**settings.kafka.workload_topics, "bike": topics}})})
    kafka.ensure_topics(s)
    rng = random.Random(unique)
    first_hour = dt.datetime(2090, 1, 1) + dt.timedelta(hours=int(unique[:6], 16) % (8 * 365 * 24))
    prefix, consumer = f"it-{unique}-", f"it-bike-sync-{unique}"
    producer = kafka.producer(s)
    rides = {}
    for i in range(80):
        ride_id = f"{prefix}{i:03d}"
        started = first_hour + dt.timedelta(seconds=rng.randrange(2 * 3600))
        rides[ride_id] = {"schema_version": 1, "ride_id": ride_id, "model_version": "bike_overtime:it",
                          "overtime_probability": round(rng.uniform(0.01, 0.99), 4),
                          "started_at": started.isoformat() + "Z", "event_ts": started.isoformat() + "Z",
                          "scored_ts": (started + dt.timedelta(seconds=1)).isoformat() + "Z",
                          "start_station_id": rng.choice(["6140.05", "HB101", "5329.03"]),
                          "rideable_type": rng.choice(["classic_bike", "electric_bike"]),
                          "member_casual": rng.choice(["member", "casual"])}
        producer.produce(topics["predictions"], key=ride_id.encode(), value=kafka.encode(rides[ride_id]))
    ended = {}
    for ride_id in list(rides)[:50]:
        duration = rng.choice([600, 1700, 1900, 2600, 2800, 4000])
        ended[ride_id] = duration
        producer.produce(topics["completed"], key=ride_id.encode(), value=kafka.encode(
            {"schema_version": 1, "ride_id": ride_id, "duration_s": duration,
             "ended_at": (first_hour + dt.timedelta(hours=3)).isoformat() + "Z"}))
    producer.produce(topics["predictions"], key=b"bad", value=kafka.encode({"ride_id": "x", "member_casual": "?"}))
    assert producer.flush(30) == 0
    eng = engine(s)
    try:
        first = sync.run(s, workload="bike", consumer_name=consumer, chunk_messages=40)
        assert first.workload == "bike" and first.hourly == views.hourly == "bike_hourly"
        assert first.messages == {topics["predictions"]: 81, topics["completed"]: 50}
        assert first.malformed == {topics["predictions"]: 1}
        assert first.rows["bike_predictions"] == 80 and first.rows["bike_outcomes"] == 50

        with eng.connect() as conn:
            got = {r[0]: r[1:] for r in conn.execute(text(
                "SELECT ride_id, member_casual, overtime_probability, actual_overtime FROM bike_predictions"
                " WHERE ride_id LIKE :p"), {"p": prefix + "%"})}
            hourly = conn.execute(text(
                "SELECT SUM(rides), SUM(completed), SUM(sum_actual), SUM(sum_loss) FROM bike_hourly"
                " WHERE hour_start >= :a AND hour_start < :b"),
                {"a": first_hour, "b": first_hour + dt.timedelta(hours=3)}).one()
        assert set(got) == set(rides)
        done = sorted(ended)
        labels = overtime_numpy(np.array([ended[r] for r in done]), np.array([rides[r]["member_casual"] for r in done]))
        assert [got[r][2] for r in done] == list(labels)
        assert all(got[r][2] is None for r in set(rides) - set(ended))
        assert int(hourly[0]) == 80 and int(hourly[1]) == 50 and float(hourly[2]) == labels.sum()
        probabilities = [rides[r]["overtime_probability"] for r in done]
        assert float(hourly[3]) / 50 == pytest.approx(log_loss(labels, probabilities), rel=1e-9)

        again = sync.run(s, workload="bike", consumer_name=consumer)
        assert again.messages == {} and again.chunks == 0

        # The analyst's view of it: bike's own named query, as the read-only account, for one dock.
        station = "HB101"
        mine = [r for r in done if rides[r]["start_station_id"] == station]
        result = CliRunner().invoke(app, ["query", "sql", "bike.live_error_by_station", "--param",
                                          f"since={first_hour:%Y-%m-%d %H:%M:%S}", "--param", f"station={station}"])
        assert result.exit_code == 0, result.output
        header, row = result.output.splitlines()[:2]
        assert header.split() == ["start_station_id", "rides", "completed", "overtime_rate", "mean_probability",
                                  "log_loss"]
        cells = row.split()
        assert cells[0] == station and int(cells[2]) == len(mine)
        want = log_loss(overtime_numpy(np.array([ended[r] for r in mine]),
                                       np.array([rides[r]["member_casual"] for r in mine])),
                        [rides[r]["overtime_probability"] for r in mine])
        assert float(cells[5]) == pytest.approx(want, rel=1e-5)
    finally:
        with eng.begin() as conn:
            conn.execute(text("DELETE FROM bike_predictions WHERE ride_id LIKE :p"), {"p": prefix + "%"})
            conn.execute(text("DELETE FROM bike_outcomes WHERE ride_id LIKE :p"), {"p": prefix + "%"})
            conn.execute(text("DELETE FROM bike_hourly WHERE hour_start >= :a AND hour_start < :b"),
                         {"a": first_hour, "b": first_hour + dt.timedelta(hours=3)})
            conn.execute(text("DELETE FROM sync_offsets WHERE consumer = :c"), {"c": consumer})
        eng.dispose()
        AdminClient(kafka.client_config(s)).delete_topics(list(topics.values()))

"""``make demo``: the whole Lambda loop on generated data, then a report from the running system.

1. bring the local stack up
2. generate a few days of raw trips (with dirty rows) in the lake
3. run ``batch_training`` through Airflow: validate, preprocess, tune, train, register, promote; and the second
   workload's, ``bike_batch_training``, on generated Citi Bike rides (a classifier, judged by log loss)
4. start the speed layer: gunicorn prediction service (both models) and the Spark streaming job
5. replay live traffic through Kafka (requests now, outcomes when the trips end, a few malformed events)
6. run ``serving_sync`` and ``monitoring`` through Airflow
7. shift the traffic: the last days arrive shifted (slower streets, more airport runs) and shifted trips are
   replayed; monitoring sees the drift and marks the drift asset, which schedules ``batch_training`` over
   those days; the new version is promoted and hot-swapped into the running service, and more shifted
   trips are replayed so that the new version's live error can be read beside the old one's
8. archive the replayed days to Hive with ``hive_archive``

Between 5 and 6, rides of the bike workload go through its endpoint (``POST /v1/bike/predict``) and its request
topic, malformed ones among them, which the same streaming job scores or dead-letters on ``bike.dlq``.

Every number in the report is read back from the services: the registry, MySQL, Hive, Kafka, the
service's own endpoints, the streaming job's status file. Model versions are compared on one test split
(the newest version's, where ``evaluate_and_promote`` scored the challenger and the champion side by
side); live error is shown per traffic phase and version. Run ``python -m deploy.local.demo --help`` for
a bigger run.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import time
import urllib.parse
from typing import Annotated, Any

import typer

from core import hive
from core.settings import Settings, get_settings
from core.spark import spark_home

MODEL = "trip_duration"
BIKE = "bike"
BIKE_RIDES_PER_DAY = 5000
BIKE_LIVE_RIDES = 300
BIKE_MALFORMED = 3
SHIFT_DAYS = 3  # batch_training's default days_back
REPLAY_SEED = 101  # the live replays before the swap
AFTER_SWAP_SEED = 102  # the shifted replay after the swap: other trips, so other trip ids
cli = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)


def first_window(end: dt.date, days: int) -> int:
    """How many days the first training covers: ``days``, or more when the last one is a weekday and none before it
    in the window is. The time-ordered test split is the last day's evening; a model that has seen no weekday
    evening cannot know its rush hour (the demo starting on a Friday trained on Saturday to Monday and beat the
    baseline by 6%, short of the 15% gate; with the Friday before, by 33%)."""
    def weekend(day: dt.date) -> bool:
        return day.weekday() >= 5

    while not weekend(end) and all(weekend(end - dt.timedelta(days=i)) for i in range(1, days)):
        days += 1
    return days


class Demo:
    def __init__(self, settings: Settings, days: int, rows_per_day: int, rate: int, seconds: int, shift: bool):
        self.settings = settings
        self.days, self.rows_per_day, self.rate, self.seconds, self.shift = days, rows_per_day, rate, seconds, shift
        today = dt.datetime.now(dt.UTC).date()
        # The first model learns normal traffic of older days; the last SHIFT_DAYS days (what the daily
        # and drift-triggered batch_training runs cover by default) then arrive shifted.
        self.shift_end = today - dt.timedelta(days=1)
        self.shift_start = today - dt.timedelta(days=SHIFT_DAYS)
        self.end = self.shift_start - dt.timedelta(days=1)
        self.days = first_window(self.end, days)
        self.start = self.end - dt.timedelta(days=self.days - 1)
        self.t0 = time.monotonic()
        self.started_ms = int(time.time() * 1000)
        self.steps = 9 if shift else 8
        self.step_no = 0
        self.report: dict[str, Any] = {}
        self._api = None
        # Each replay's trips carry its stem in their ids; the report groups live error by it.
        self.phases = {replay_stem(self.end, REPLAY_SEED, False): "normal traffic"}
        if shift:
            self.phases[replay_stem(self.shift_end, REPLAY_SEED, True)] = "shifted, before the swap"
            self.phases[replay_stem(self.shift_end, AFTER_SWAP_SEED, True)] = "shifted, after the swap"

    # ------------------------------------------------------------------ plumbing
    def step(self, title: str) -> None:
        self.step_no += 1
        print(f"\n== {self.step_no}/{self.steps} {title}  [{time.monotonic() - self.t0:.0f}s]", flush=True)

    @property
    def api(self):
        from deploy.local.airflow_api import AirflowAPI

        if self._api is None:
            self._api = AirflowAPI(self.settings)
        return self._api

    def run_dag(self, dag_id: str, conf: dict | None = None, timeout: float = 1200) -> dict:
        t = time.monotonic()
        print(f"  triggering {dag_id} {json.dumps(conf or {})} (watch it at {self.settings.airflow.url}/dags/{dag_id})",
              flush=True)
        seen: dict[str, str] = {}

        def progress(run: dict) -> None:
            states = self.api.task_states(dag_id, run["dag_run_id"])
            changed = {k: v for k, v in states.items() if seen.get(k) != v and v in ("running", "success", "failed",
                                                                                     "up_for_retry", "skipped")}
            seen.update(states)
            if changed:
                print(f"    [{time.monotonic() - t:4.0f}s] " + ", ".join(f"{k} {v}" for k, v in changed.items()),
                      flush=True)

        run = self.api.run_dag(dag_id, conf, timeout=timeout, progress=progress)
        if run["state"] != "success":
            raise RuntimeError(f"{dag_id} run {run['dag_run_id']} failed: "
                               f"{self.api.failed_tasks(dag_id, run['dag_run_id'])}; see the Airflow UI")
        print(f"  {dag_id} succeeded in {time.monotonic() - t:.0f}s", flush=True)
        return run

    # ------------------------------------------------------------------ steps
    def stack_up(self) -> None:
        from deploy.local.stack import Stack

        self.step("bringing the stack up")
        Stack(self.settings).up()

    def generate(self) -> None:
        from workloads.taxi import generate

        self.step(f"generating {self.days} days x {self.rows_per_day:,} trips ({self.start} .. {self.end})")
        generate.generate(self.settings, self.start, self.days, self.rows_per_day, seed=7, dirty_share=0.03)

    def train(self) -> None:
        self.step("batch_training through Airflow (validate, preprocess, Ray Tune, train, register, promote)")
        self.run_dag("batch_training", {"end_date": self.end.isoformat(), "days_back": self.days})

    def train_bike(self) -> None:
        """The second workload: its own raw data, rules, DAG, task and baseline, from its folder alone."""
        from core.workload import load, module

        bike = load(BIKE)
        self.step(f"the bike workload: {self.days} days x {BIKE_RIDES_PER_DAY:,} Citi Bike rides, then "
                  f"{bike.dag_id('batch_training')} (a classifier of overtime, judged by log loss)")
        module(BIKE, "generate").generate(self.settings, self.start, self.days, BIKE_RIDES_PER_DAY, seed=7,
                                          dirty_share=0.03)
        self.run_dag(bike.dag_id("batch_training"), {"start_date": self.start.isoformat(),
                                                     "end_date": self.end.isoformat()})

    def speed_up(self) -> None:
        from deploy.local.speed import SPEED_SERVICES, wait_for_model
        from deploy.local.stack import Stack

        self.step("starting the speed layer (gunicorn prediction service, Spark streaming job)")
        Stack(self.settings, catalog=SPEED_SERVICES).up()
        version = wait_for_model(self.settings, 120)
        if version is None:
            raise RuntimeError("the prediction service loaded no model; see .runtime/logs/speed-api.log")
        print(f"  serving {version}")

    def replay(self, day: dt.date, shift: bool, seed: int = REPLAY_SEED) -> None:
        from batch.replay import replay

        count = self.rate * self.seconds
        replay(self.settings, day, count, self.rate, seed=seed, shift=shift, time_scale=600,
               malformed_share=0.01, echo=lambda line: print(f"  {line}", flush=True))

    def live(self) -> None:
        self.step(f"replaying live traffic: {self.rate}/s for {self.seconds}s, outcomes as trips end; bike rides "
                  "through their endpoint and topic")
        self.replay(self.end, shift=False)
        self.report["endpoint"] = self.measure_endpoint()
        self.report["bike"] = self.bike_live()
        self.wait_for_stream()

    def bike_live(self) -> dict:
        """Rides of the generated last day through ``POST /v1/bike/predict`` (latency) and onto the bike request
        topic with a few malformed ones, which the one streaming job scores or dead-letters on the bike DLQ."""
        import requests

        from core import kafka
        from core.workload import load, module

        bike = load(BIKE)
        deadline = time.monotonic() + 60
        url = self.settings.speed.url
        while time.monotonic() < deadline and requests.get(f"{url}/readyz?workload={BIKE}", timeout=5).status_code \
                != 200:
            time.sleep(1)
        table = module(BIKE, "generate").generate_day(self.end, BIKE_LIVE_RIDES, seed=103, dirty_share=0.0)
        fields = [f.name for f in bike.request.fields]
        rides, outcomes = [], []
        for row, ended in zip(table.select(fields).to_pylist(), table.column("ended_at").to_pylist(), strict=True):
            duration_s = (ended - row["started_at"]).total_seconds()
            row["started_at"] = row["started_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            row["ride_id"] = f"demo-{row['ride_id']}"
            rides.append(row)
            outcomes.append({bike.request.key: row["ride_id"], bike.outcome.time: ended.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             bike.outcome.value: duration_s})
        session, lat = requests.Session(), []
        for ride in rides[:200]:
            t = time.perf_counter()
            r = session.post(f"{url}/v1/{BIKE}/predict", json=ride, timeout=10)
            lat.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
        topics = self.settings.kafka.for_workload(BIKE)
        producer = kafka.producer(self.settings)
        for ride in rides:
            producer.produce(topics.requests, key=ride["ride_id"].encode(), value=json.dumps(ride).encode())
        for i in range(BIKE_MALFORMED):
            bad = dict(rides[i], ride_id=f"demo-malformed-{i}", rideable_type="tandem")
            producer.produce(topics.requests, key=bad["ride_id"].encode(), value=json.dumps(bad).encode())
        for outcome in outcomes:  # the rides end: their durations, which the sync joins to the predictions
            producer.produce(topics.completed, key=outcome[bike.request.key].encode(),
                             value=json.dumps(outcome).encode())
        producer.flush(30)
        print(f"  {len(lat)} rides through POST /v1/{BIKE}/predict; {len(rides)} rides and {BIKE_MALFORMED} malformed "
              f"onto {topics.requests}, their {len(outcomes)} outcomes onto {topics.completed}", flush=True)
        return {"requests": len(lat), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99), "produced": len(rides)}

    def wait_for_stream(self, timeout: float = 120, quiet_s: float = 4.0) -> None:
        """Until the streaming job has run no batch for ``quiet_s`` (it has caught up with the topic)."""
        from deploy.local.speed import StreamJob

        job = StreamJob(self.settings)
        deadline = time.monotonic() + timeout
        batches, since = job.status().get("batches"), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(1)
            now = job.status().get("batches")
            if now != batches:
                batches, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return

    def serve(self, window_minutes: int) -> dict:
        from core.workload import load

        self.step("serving_sync (taxi and bike) and monitoring through Airflow")
        self.run_dag("serving_sync")
        if "bike" in self.report:
            self.run_dag(load(BIKE).dag_id("serving_sync"))
        run = self.run_dag("monitoring", {"model_name": MODEL, "window_minutes": window_minutes})
        return self.monitoring_verdict(run)

    def monitoring_verdict(self, run: dict) -> dict:
        run_id = urllib.parse.quote(run["dag_run_id"], safe="")
        tis = self.api.call("GET", f"/api/v2/dags/monitoring/dagRuns/{run_id}/taskInstances")["task_instances"]
        states = {t["task_id"]: t["state"] for t in tis}
        xcom = self.api.call("GET", f"/api/v2/dags/monitoring/dagRuns/{run_id}/taskInstances/check_drift/"
                                    "xcomEntries/return_value")
        verdict = xcom.get("value") or {}
        if isinstance(verdict, str):
            verdict = json.loads(verdict)
        verdict["asset_marked"] = states.get("mark_drift") == "success"
        print(f"  drift: max PSI {verdict.get('max_psi')} ({verdict.get('max_psi_feature')}), live MAE "
              f"{_num(verdict.get('live_mae_s'))}s vs test {_num(verdict.get('test_mae_s'))}s -> "
              f"{'DRIFT: ' + '; '.join(verdict.get('reasons', [])) if verdict.get('breached') else 'no drift'}")
        return verdict

    def shift_traffic(self) -> None:
        from workloads.taxi import generate

        self.step("shifting the traffic: drift -> drift asset -> retraining -> promotion -> hot swap")
        before = self._served_version()
        print(f"  the city changes: the last {SHIFT_DAYS} days arrive with slower streets and more airport runs")
        generate.generate(self.settings, self.shift_start, SHIFT_DAYS, self.rows_per_day, seed=8, dirty_share=0.03,
                          shift=True)
        phase_start = time.monotonic()
        self.replay(self.shift_end, shift=True)
        self.wait_for_stream()
        window = max(1, int((time.monotonic() - phase_start) / 60) + 1)
        started = dt.datetime.now(dt.UTC)
        self.api.call("PATCH", "/api/v2/dags/batch_training", {"is_paused": False})
        self.run_dag("serving_sync")
        verdict = self.monitoring_verdict(self.run_dag("monitoring", {"model_name": MODEL, "window_minutes": window}))
        self.report["drift"] = verdict
        if not verdict.get("asset_marked"):
            print("  monitoring saw no drift, so nothing was retrained")
            return
        run = self._asset_triggered_run(started)
        print(f"  the drift asset scheduled batch_training run {run['dag_run_id']}; waiting for it", flush=True)
        deadline = time.monotonic() + 1500
        while run["state"] not in ("success", "failed") and time.monotonic() < deadline:
            time.sleep(10)
            run = self.api.call("GET", f"/api/v2/dags/batch_training/dagRuns/"
                                       f"{urllib.parse.quote(run['dag_run_id'], safe='')}")
        print(f"  retraining {run['state']}")
        deadline = time.monotonic() + 60
        after = self._served_version()
        while after == before and time.monotonic() < deadline:
            time.sleep(2)
            after = self._served_version()
        self.report["swap"] = {"before": before, "after": after, "retrain_run": run["dag_run_id"],
                               "retrain_state": run["state"]}
        print(f"  service now serves {after}" + (" (hot-swapped, no restart)" if after != before else
                                                 " (the challenger was not promoted)"))
        if after != before:
            # Shifted trips again, now scored by the new version: its live error beside the old one's.
            print(f"  replaying more shifted trips, scored by {after}", flush=True)
            self.replay(self.shift_end, shift=True, seed=AFTER_SWAP_SEED)
            self.wait_for_stream()
            self.run_dag("serving_sync")

    def _asset_triggered_run(self, since: dt.datetime, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.api.call("GET", "/api/v2/dags/batch_training/dagRuns?run_type=asset_triggered"
                                        "&order_by=-run_after&limit=5")["dag_runs"]
            for r in runs:
                if dt.datetime.fromisoformat(r["run_after"]) >= since:
                    return r
            time.sleep(3)
        raise RuntimeError("the drift asset did not schedule batch_training; see the Airflow UI (Assets)")

    def archive(self) -> None:
        days = [self.end, self.shift_end] if self.shift else [self.end]
        self.step(f"archiving the replayed days {', '.join(map(str, days))} to Hive (hive_archive)")
        for day in days:
            self.run_dag("hive_archive", {"day": day.isoformat()})

    # ------------------------------------------------------------------ measurements
    def _served_version(self) -> str:
        import requests

        return requests.get(f"{self.settings.speed.url}/v1/models/current", timeout=5).json()["version"]

    def scoring_now(self) -> dict:
        """The version the service serves now, and the versions of the streaming job's last batch."""
        from deploy.local.speed import StreamJob

        try:
            service = self._served_version()
        except Exception as exc:  # noqa: BLE001 - an unreachable service is part of the report
            service = f"unreachable ({str(exc).splitlines()[0][:80]})"
        status = StreamJob(self.settings).status()
        return {"service": service, "stream_last": status.get("last") or {}, "stream_ts": status.get("ts")}

    def measure_endpoint(self, n: int = 300) -> dict:
        import requests

        session = requests.Session()
        url = f"{self.settings.speed.url}/v1/predict"
        lat = []
        for i in range(n):
            body = {"trip_id": f"demo-probe-{i}", "pickup_ts": f"{self.end}T{8 + i % 12:02d}:15:00Z",
                    "PULocationID": 1 + (i * 37) % 263, "DOLocationID": 1 + (i * 91) % 263, "passenger_count": 1,
                    "trip_distance": 0.5 + (i % 30) / 3}
            t = time.perf_counter()
            r = session.post(url, json=body, timeout=10)
            lat.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
        return {"requests": n, "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99)}

    def collect(self) -> None:
        from sqlalchemy import text

        from core.db import engine

        r = self.report
        r["models"] = registered_models(self.settings)
        r["shifted_days"] = sorted(str(self.shift_start + dt.timedelta(days=i)) for i in range(SHIFT_DAYS)) \
            if self.shift else []
        eng = engine(self.settings)
        with eng.connect() as conn:
            r["mysql"] = {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in
                          ("predictions_recent", "trip_outcomes", "zone_hour_stats", "drift_reports",
                           "training_runs", "model_versions")}
            # Grouped by the replay a trip came from (its id without the row number) and the version that
            # scored it.
            rows = [dict(row) for row in conn.execute(text(
                "SELECT REGEXP_REPLACE(p.trip_id, '-[0-9]+$', '') AS stem, p.model_version, COUNT(*) AS completed, "
                "AVG(ABS(p.predicted_duration_s - o.duration_s)) AS mae_s, MIN(p.scored_ts) AS first_scored "
                "FROM predictions_recent p JOIN trip_outcomes o ON o.trip_id = p.trip_id "
                "GROUP BY stem, p.model_version ORDER BY first_scored")).mappings()]
        eng.dispose()
        r["live"] = live_error(rows, self.phases)
        r["now"] = self.scoring_now()
        r["hive"] = self._hive_counts()
        r["reconciled"] = self.reconcile()
        lat = []
        for _, value in _messages(self.settings, self.settings.kafka.trip_predictions_topic, self.started_ms):
            v = json.loads(value)
            lat.append((dt.datetime.fromisoformat(v["scored_ts"]) - dt.datetime.fromisoformat(v["event_ts"]))
                       .total_seconds() * 1000)
        dlq = len(_messages(self.settings, self.settings.kafka.dead_letter_topic, self.started_ms))
        r["stream"] = {"predictions": len(lat), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
                       "dead_letters": dlq}
        if "bike" in r:
            from core.workload import load

            bike, topics = load(BIKE), self.settings.kafka.for_workload(BIKE)
            r["bike"]["models"] = registered_models(self.settings, bike.model_name)
            predicted = [json.loads(v) for _, v in _messages(self.settings, topics.predictions, self.started_ms)]
            r["bike"]["stream"] = {
                "topic": topics.predictions, "dlq": topics.dlq, "predictions": len(predicted),
                "mean_probability": statistics.fmean(p["overtime_probability"] for p in predicted) if predicted
                else None,
                "dead_letters": len(_messages(self.settings, topics.dlq, self.started_ms))}
            r["bike"]["live"] = self.bike_live_error(bike)

    def bike_live_error(self, bike) -> dict:
        """The bike model's live error from MySQL: its predictions table, each ride's label derived by the sync from
        the outcome, scored with the workload's metrics; and the hourly view's own log loss (sum of loss over
        completed rides), which analysts read."""
        from sqlalchemy import text

        from core import views
        from core.db import engine

        v = views.of(bike, self.settings)
        eng = engine(self.settings)
        try:
            with eng.connect() as conn:
                rows = conn.execute(text(
                    f"SELECT {v.prediction}, {v.actual} FROM {v.predictions} WHERE {v.key} LIKE 'demo-%' "
                    f"AND {v.actual} IS NOT NULL")).all()
                hourly = conn.execute(text(f"SELECT SUM({v.completed}), SUM({v.sum_loss}) FROM {v.hourly}")).one()
        finally:
            eng.dispose()
        out: dict = {"table": v.predictions, "hourly": v.hourly, "completed": len(rows)}
        if rows:
            import numpy as np

            metrics = bike.task.metrics(np.array([r[1] for r in rows], dtype="float64"),
                                        np.array([r[0] for r in rows], dtype="float64"))
            out.update(log_loss=metrics["log_loss"], roc_auc=metrics["roc_auc"])
        if hourly[0]:
            out["hourly_log_loss"] = float(hourly[1]) / float(hourly[0])
        return out

    def reconcile(self) -> dict:
        """The master log beside Kafka, Hive and MySQL (``serving.reconcile``): the archived days by event day, the
        topics by arrival day (the replays arrived today)."""
        from core.spark import build_session
        from serving.reconcile import reconcile

        days = [self.end, self.shift_end] if self.shift else [self.end]
        today = dt.datetime.now(dt.UTC).date()
        arrived = (dt.datetime.fromtimestamp(self.started_ms / 1000, dt.UTC).date(), today)
        spark = build_session(self.settings, "lambdaml-demo-reconcile")
        spark.sparkContext.setLogLevel("WARN")
        try:
            out = reconcile(spark, self.settings, min(days), max(days), arrived=arrived).as_json()
        finally:
            spark.stop()
        out["views"] = [v for v in out["views"] if v["day"] in {d.isoformat() for d in days}]  # the archived ones
        return out

    def _hive_counts(self) -> dict:
        sp = self.settings.spark
        conn = hive.connect(self.settings)  # as the read-only analyst
        out = {}
        try:
            cur = conn.cursor()
            for table in ("trips", "quarantine", "predictions", "zone_hour_stats", "training_runs"):
                try:
                    cur.execute(f"SELECT COUNT(*) FROM {sp.hive_database}.{table}")
                    out[table] = cur.fetchone()[0]
                except Exception as exc:  # noqa: BLE001 - a table not written yet is part of the report
                    out[table] = f"n/a ({str(exc).splitlines()[0][:60]})"
        finally:
            conn.close()
        return out

    def print_report(self) -> None:
        k = self.settings.kafka
        print(report_text(self.report, k.trip_predictions_topic, k.dead_letter_topic))
        print(where_to_look(self.settings))
        print(f"demo finished in {time.monotonic() - self.t0:.0f}s")


# ---------------------------------------------------------------------------------------------- the report
def replay_stem(day: dt.date, seed: int, shift: bool) -> str:
    """The stem of a replay's trip ids (``batch.replay``: ``<YYYYMMDD>-<seed>[-shift]-<row>``)."""
    return f"{day:%Y%m%d}-{seed}{'-shift' if shift else ''}"


def live_error(rows: list[dict], phases: dict[str, str]) -> list[dict]:
    """MySQL's (stem, model_version, completed, mae_s) groups as rows per traffic phase and version, in the
    demo's phase order; trips of other replays (earlier runs, tests) are left out."""
    order = list(phases)
    out = [{"phase": phases[r["stem"]], "model_version": r["model_version"], "completed": int(r["completed"]),
            "mae_s": None if r["mae_s"] is None else float(r["mae_s"]), "_order": order.index(r["stem"])}
           for r in rows if r["stem"] in phases]
    out.sort(key=lambda r: r["_order"])  # stable: within a phase, the order MySQL gave (first scored first)
    for r in out:
        del r["_order"]
    return out


def _mae(block: dict | None) -> float | None:
    return (block or {}).get("mae_s")


def _days(partitions: list[str]) -> list[str]:
    return sorted(p.rsplit("=", 1)[-1] for p in partitions or [])


def registered_models(settings: Settings, model: str = MODEL, newest: int = 4) -> list[dict]:
    """The newest versions of ``model`` as the report reads them from the registry, newest first."""
    from core.registry import Registry

    return [{"version": mv.version, "stage": mv.stage, "metrics": mv.metrics, "data_partitions": mv.data_partitions}
            for mv in Registry(settings).list(model)[:newest]]


def compare_on_one_split(models: list[dict]) -> dict | None:
    """The versions that were scored on the newest version's test split, from what ``evaluate_and_promote``
    recorded with it: ``test.model`` (the newest), ``test.champion`` (the version in production then,
    ``champion_version``), ``test.baseline``. ``models`` come newest first (the registry's order)."""
    if not models:
        return None
    newest = models[0]
    metrics = newest.get("metrics") or {}
    test = metrics.get("test") or {}
    rows = [{"version": newest["version"], "stage": newest["stage"], "mae_s": _mae(test.get("model")),
             "note": "the newest, trained on the first 70% of these days"}]
    champion = metrics.get("champion_version")
    if champion and test.get("champion"):
        stage = next((m["stage"] for m in models if m["version"] == champion), "?")
        rows.append({"version": champion, "stage": stage, "mae_s": _mae(test["champion"]),
                     "note": "in production when the newest was evaluated"})
    on_split = {row["version"] for row in rows}
    return {"split_of": newest["version"], "days": _days(newest.get("data_partitions") or []), "rows": rows,
            "baseline_mae_s": _mae(test.get("baseline")), "decision": metrics.get("decision"),
            "not_on_split": [m["version"] for m in models if m["version"] not in on_split]}


def _gain(mae: float | None, reference: float | None) -> str:
    if not mae or not reference:
        return ""
    gain = 1 - mae / reference
    return f"{abs(gain):.0%} {'better' if gain >= 0 else 'worse'}"


def report_text(r: dict, predictions_topic: str, dead_letter_topic: str) -> str:
    """The report, from the figures ``Demo.collect`` read back (pure: a fixture of figures is enough)."""
    out = ["", "=" * 100, "Report (every figure read back from the running services)", "=" * 100]
    cmp = compare_on_one_split(r.get("models") or [])
    if cmp:
        days = cmp["days"]
        span = f"{days[0]} .. {days[-1]}" if days else "?"
        shifted = " (the shifted traffic)" if days and set(days) <= set(r.get("shifted_days") or []) else ""
        out += ["", "Model versions on one test split (MAE in seconds)",
                f"  split: the test split of {cmp['split_of']}: the last 15% of its trips by pickup time, pickup "
                f"days {span}{shifted}"]
        base = cmp["baseline_mae_s"]
        for row in cmp["rows"]:
            vs = _gain(row["mae_s"], base)
            out.append(f"  {row['stage']:10s} {row['version']:48s} MAE {_num(row['mae_s']):>6s}  "
                       f"{vs + ' than the baseline' if vs else '':29s} {row['note']}")
        out.append(f"  {'baseline':10s} {'mean duration per zone pair (train split)':48s} MAE {_num(base):>6s}")
        if len(cmp["rows"]) == 2:
            new, old = cmp["rows"]
            out.append(f"  on this split the newest is {_gain(new['mae_s'], old['mae_s'])} than {old['version']}")
        if cmp["decision"]:
            out.append(f"  promotion decision: {cmp['decision']}")
        own = [m for m in r["models"] if _mae((m.get("metrics") or {}).get("test", {}).get("model"))]
        if len(own) > 1:
            out.append("  each version on its own test split (other days: read a row against its own baseline, "
                       "not against the other rows)")
            for m in own:
                test = m["metrics"]["test"]
                d = _days(m.get("data_partitions") or [])
                mae, base_own = _mae(test.get("model")), _mae(test.get("baseline"))
                out.append(f"    {m['version']:46s} MAE {_num(mae):>6s}  baseline {_num(base_own):>6s}  "
                           f"{_gain(mae, base_own):>10s}  days {d[0] + ' .. ' + d[-1] if d else '?'}")
    out += ["", "Live error per traffic phase and model version (predictions joined to outcomes in MySQL)"]
    if not r.get("live"):
        out.append("  no completed trips were scored yet")
    for row in r.get("live") or []:
        out.append(f"  {row['phase']:26s} {row['model_version']:52s} {row['completed']:>6} completed trips  "
                   f"MAE {_num(row['mae_s'])}s")
    now = r.get("now")
    if now:
        last = now.get("stream_last") or {}
        versions = last.get("model_versions") or []
        out += ["", "Scoring now",
                f"  service  GET /v1/models/current: {now.get('service')}"]
        if last:
            line = (f"  stream   last batch (#{last.get('batch_id')}, {last.get('rows')} rows"
                    + (f", status written {now['stream_ts']}" if now.get("stream_ts") else "")
                    + f"): scored by {', '.join(versions) or '-'}")
            out.append(line)
            if versions and now.get("service") not in versions:
                out.append("           the stream has scored nothing since the swap; its next batch is scored by "
                           "the service's version")
        else:
            out.append("  stream   no batch yet")
    e, s = r.get("endpoint", {}), r["stream"]
    out += ["", "Latency",
            f"  endpoint  POST /v1/predict, {e.get('requests')} sequential requests: p50 {_num(e.get('p50_ms'), 1)} "
            f"ms, p99 {_num(e.get('p99_ms'), 1)} ms",
            f"  stream    produce -> prediction on {predictions_topic}, {s['predictions']} events: "
            f"p50 {_num(s['p50_ms'])} ms, p99 {_num(s['p99_ms'])} ms"]
    out += bike_text(r.get("bike"))
    if "drift" in r:
        out += ["", f"Drift: {'; '.join(r['drift'].get('reasons', [])) or 'none'}"]
    if "swap" in r:
        w = r["swap"]
        out.append(f"  retraining run {w['retrain_run']}: {w['retrain_state']}; served {w['before']} -> {w['after']}")
    out += ["", "Counts",
            "  MySQL   " + ", ".join(f"{k} {v}" for k, v in r["mysql"].items()),
            "  Hive    " + ", ".join(f"lake.{k} {v}" for k, v in r["hive"].items()),
            f"  Kafka   dead letters on {dead_letter_topic}: {s['dead_letters']}"]
    out += reconciled_text(r.get("reconciled"))
    return "\n".join(out)


def reconciled_text(rec: dict | None) -> list[str]:
    """The report's section on the master log, reconciled with Kafka, Hive and MySQL (pure)."""
    if not rec:
        return []
    out = ["", "Master log (every event in the lake once), reconciled (lambdaml views reconcile)",
           "  records by arrival day: Kafka offsets -> master log rows"]
    for t in rec["topics"]:
        if t["kafka"] or t["master"]:
            out.append(f"    {t['topic']:22s} {t['day']}  Kafka {t['kafka']:>7}  master {t['master']:>7}  "
                       f"{t['verdict']}")
    out.append("  predictions / completed by event day: master log -> Hive -> MySQL")

    def pair(c: dict | None) -> str:
        return "-" if c is None else f"{c['predictions']}/{c['completed']}"

    for v in rec["views"]:
        out.append(f"    {v['day']}  master {pair(v['master']):>11s}  Hive {pair(v['hive']):>11s}  "
                   f"MySQL {pair(v['mysql']):>11s}  {v['verdict']}")
    return out


def bike_text(b: dict | None) -> list[str]:
    """The report's section on the second workload (pure)."""
    if not b:
        return []
    out = ["", "Bike overtime (the second workload: a classifier at unlock, log loss against the station-hour "
               "baseline)"]
    models = b.get("models") or []
    if models:
        newest = models[0]
        test = (newest.get("metrics") or {}).get("test") or {}
        model, base = test.get("model") or {}, test.get("baseline") or {}
        out.append(f"  {newest['stage']:10s} {newest['version']:48s} log loss {_num(model.get('log_loss'), 3)}  "
                   f"ROC AUC {_num(model.get('roc_auc'), 3)}  Brier {_num(model.get('brier'), 3)}  "
                   f"{_gain(model.get('log_loss'), base.get('log_loss'))} than the baseline")
        out.append(f"  {'baseline':10s} {'overtime rate per start station and hour':48s} log loss "
                   f"{_num(base.get('log_loss'), 3)}  ROC AUC {_num(base.get('roc_auc'), 3)}  Brier "
                   f"{_num(base.get('brier'), 3)}")
        decision = (newest.get("metrics") or {}).get("decision")
        if decision:
            out.append(f"  promotion decision: {decision}")
    else:
        out.append("  no bike model registered")
    st = b.get("stream") or {}
    out.append(f"  endpoint  POST /v1/bike/predict, {b.get('requests')} sequential requests: p50 "
               f"{_num(b.get('p50_ms'), 1)} ms, p99 {_num(b.get('p99_ms'), 1)} ms")
    if st:
        out.append(f"  stream    {b.get('produced')} rides produced: {st['predictions']} predictions on {st['topic']} "
                   f"(mean overtime probability {_num(st.get('mean_probability'), 3)}), {st['dead_letters']} dead "
                   f"letters on {st['dlq']}")
    live = b.get("live") or {}
    if live.get("completed"):
        out.append(f"  live      {live['completed']} rides with their outcome in MySQL {live['table']}: log loss "
                   f"{_num(live.get('log_loss'), 3)}, ROC AUC {_num(live.get('roc_auc'), 3)}; {live['hourly']} "
                   f"(all hours) log loss {_num(live.get('hourly_log_loss'), 3)}")
    elif live:
        out.append(f"  live      no ride with its outcome in MySQL {live['table']} yet")
    return out


def _messages(settings: Settings, topic: str, since_ms: int) -> list[tuple[bytes | None, bytes]]:
    from confluent_kafka import TopicPartition

    from core import kafka

    consumer = kafka.consumer(settings, f"demo-report-{time.monotonic_ns()}")
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        parts = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in meta.partitions], timeout=10)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions}
        todo = {tp.partition for tp in parts if 0 <= tp.offset < ends[tp.partition]}
        consumer.assign([tp for tp in parts if tp.partition in todo])
        out = []
        deadline = time.monotonic() + 60
        while todo and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            out.append((msg.key(), msg.value()))
            if msg.offset() + 1 >= ends[msg.partition()]:
                todo.discard(msg.partition())
        return out
    finally:
        consumer.close()


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def _num(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def shown_secret(model: Any, field: str, variable: str) -> str:
    """A documented local default is printed; a password set in the settings never is."""
    default = type(model).model_fields[field].default.get_secret_value()
    return default if getattr(model, field).get_secret_value() == default else f"${variable}"


def where_to_look(settings: Settings) -> str:
    a, m, sp, s3, k, s = settings.airflow, settings.mysql, settings.spark, settings.s3, settings.kafka, settings.speed
    host, port = m.server_host_port()
    airflow_pw = shown_secret(a, "admin_password", "LAMBDAML_AIRFLOW__ADMIN_PASSWORD")
    analyst_pw = shown_secret(m, "analyst_password", "LAMBDAML_MYSQL__ANALYST_PASSWORD")
    return f"""
Where to look next
  Airflow UI      {a.url}   login {a.admin_user} / {airflow_pw}
  Predict (curl)  curl -s -X POST {s.url}/v1/predict -H 'Content-Type: application/json' \\
                    -d '{{"trip_id":"t1","pickup_ts":"2026-01-05T08:30:00Z","PULocationID":161,"DOLocationID":236,"trip_distance":2.1}}'
  Service         {s.url}/v1/models/current   {s.url}/metrics   {s.url}/openapi.json
  MySQL (analyst) mariadb -h {host} -P {port} -u {m.analyst_user} -p{analyst_pw} {m.database} \\
                    -e 'SELECT pu_location_id, hour_start, trips, sum_abs_error_s/NULLIF(completed,0) AS mae_s
                        FROM zone_hour_stats ORDER BY hour_start DESC LIMIT 10'
  Hive (PyHive)   .venv/bin/python -c "from pyhive import hive; c=hive.connect('{sp.thrift_host}', {sp.thrift_port}, \\
                    auth='CUSTOM', username='{m.analyst_user}', password='{analyst_pw}').cursor(); \\
                    c.execute('SELECT * FROM {sp.hive_database}.training_runs LIMIT 5'); print(c.fetchall())"
  Hive (beeline)  {spark_home()}/bin/beeline -u {hive.jdbc_url(settings)} -n {m.analyst_user} -p {analyst_pw} \\
                    -e 'SELECT * FROM {sp.hive_database}.training_runs LIMIT 5'
  Kafka           {k.bootstrap}   topics: {', '.join(k.topics)}
  S3 (lake)       {s3.endpoint}   bucket {s3.bucket}, key {s3.access_key}
  Logs            {settings.log_dir}
  Stop it all     .venv/bin/lambdaml speed down && .venv/bin/lambdaml stack down
"""


@cli.command()
def main(
    days: Annotated[int, typer.Option(min=2, help="Days of raw trips to generate and train on.")] = 3,
    rows_per_day: Annotated[int, typer.Option(min=1000, help="Trips per generated day (try 50000 for a bigger run).")]
    = 4000,
    rate: Annotated[int, typer.Option(min=1, help="Live requests per second during the replay.")] = 40,
    seconds: Annotated[int, typer.Option(min=10, help="Seconds of live replay per phase.")] = 45,
    shift: Annotated[bool, typer.Option(help="Run the drift phase: shift, detect, retrain, hot-swap.")] = True,
) -> None:
    """Run the whole loop on generated data and print a report. Re-running is safe."""
    demo = Demo(get_settings(), days, rows_per_day, rate, seconds, shift)
    try:
        demo.stack_up()
        demo.generate()
        demo.train()
        demo.train_bike()
        demo.speed_up()
        demo.live()
        demo.report["drift_before_shift"] = demo.serve(window_minutes=60)
        if shift:
            demo.shift_traffic()
        demo.archive()
        demo.collect()
    except Exception as exc:  # noqa: BLE001 - one clear line, then the details are in the logs
        print(f"\nerror: {exc}", file=sys.stderr)
        print(f"logs: {demo.settings.log_dir}", file=sys.stderr)
        raise typer.Exit(1) from None
    demo.print_report()


if __name__ == "__main__":
    cli()

"""The streaming job end to end, side by side with a plain consumer loop doing the same work.

Both run on a private speed layer (runtime folder, port, topics, a production-size model with random
weights) against the same prediction service, one after the other so that they never share the cores:

- ``stream``: ``speed/stream.py`` under ``lambdaml speed``'s process management (Spark Structured
  Streaming, the configured trigger, ``foreachBatch`` scoring over HTTP);
- ``loop``: a confluent-kafka consumer of the same requests topic (own group id) that ``consume``-s up
  to 500 messages at a time, validates them (``TripRequest``), computes the features in-process
  (``workloads.taxi.features.compute_numpy`` of ``speed.predictor.request_columns``), makes the same calls
  (``POST /v1/predict/features`` over one kept-alive session, ``stream_http_batch`` trips a call),
  produces the predictions to a topic of its own, then commits — at least once, like the stream.

Each system gets a warm-up, then two phases of fresh requests (generated trips, as ``lambdaml replay``
sends): a backlog produced as fast as possible — throughput is predictions over the time from the
first request's Kafka timestamp to the last prediction's — and a fixed rate, whose latency is each
prediction's Kafka timestamp minus its request's. Last, the job is started with Spark's real-time
trigger, and what it does is recorded.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import re
import time
import uuid
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from bench import common
from bench.endpoint import REQUEST_DAY, PrivateSpeedLayer, check_target, serve_model, uncommitted, with_speed
from core import kafka
from core.settings import Settings, get_settings
from deploy.local.process import StackError
from deploy.local.speed import LakeSinkJob, PredictionAPI, StreamJob
from deploy.local.stack import Stack

NAME = "stream"
LOOP_TOPIC = "loop.predictions"
FLOOR_TOPIC = "spark-floor.requests"
NO_LAKE_TOPIC = "stream-no-lake-sink.predictions"
LOOP_BATCH = 500
LOOP_POLL_S = 0.02  # consume() waits this long for a batch to fill: the loop's own batching delay
PRODUCER_LINGER_MS = 5  # requests and loop predictions, as the stream's sink produces
WARMUP_REQUESTS = 1000
PROGRESS_EVERY_S = 5.0
P99_TARGET_MS = 1000.0  # at --rate, produce -> prediction
JVM_CPU_TARGET_US = 150.0  # the stream's Spark JVM, CPU an event of the backlog
ALLOWLIST_CHECK = "spark.sql.streaming.realTimeMode.allowlistCheck"

Messages = list[tuple[str, bytes]]


# --------------------------------------------------------------------------------------------------- requests
class RequestSource:
    """Valid single-trip requests from one generated day; each phase gets fresh trip ids."""

    def __init__(self, count: int, seed: int):
        from batch.replay import plan_day

        self.plan = plan_day(REQUEST_DAY, count, seed)

    def messages(self, prefix: str, count: int) -> Messages:
        out = []
        for j in range(count):
            key = f"{prefix}-{j:06d}"
            request = self.plan.request(j % len(self.plan)).model_copy(update={self.plan.key_name: key})
            out.append((key, request.model_dump_json().encode()))
        return out


class RequestProducer:
    """Produces requests and keeps the Kafka timestamp of each (set when ``produce`` is called)."""

    def __init__(self, settings: Settings):
        self.topic = settings.kafka.trip_requests_topic
        self.producer = kafka.producer(settings, **{"linger.ms": PRODUCER_LINGER_MS})
        self.sent_ms: dict[str, int] = {}

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is None:
            self.sent_ms[msg.key().decode()] = msg.timestamp()[1]

    def send(self, messages: Messages, rate: float | None) -> float:
        """Seconds to produce ``messages`` at ``rate`` per second (``None``: as fast as possible)."""
        t0 = time.monotonic()
        for i, (key, value) in enumerate(messages):
            if rate is not None:
                pause = t0 + i / rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
            _produce(self.producer, self.topic, key.encode(), value, self._delivered)
        if self.producer.flush(60) != 0:
            raise RuntimeError(f"could not deliver every request to {self.topic}")
        return time.monotonic() - t0


def _produce(producer: Any, topic: str, key: bytes, value: bytes, on_delivery: Callable | None = None) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.1)


class PredictionWatcher:
    """Reads a predictions topic from where it ends now: the Kafka timestamp of each trip's first prediction."""

    def __init__(self, settings: Settings, topic: str):
        from confluent_kafka import TopicPartition

        self.consumer = kafka.consumer(settings, f"bench-watch-{uuid.uuid4().hex[:8]}")
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions]
        self.consumer.assign([TopicPartition(topic, p, end) for p, end in zip(partitions, ends)])

    def wait(self, ids: set[str], timeout: float, alive: Callable[[], bool] = lambda: True) -> dict[str, int]:
        got: dict[str, int] = {}
        t0 = last_note = time.monotonic()
        try:
            while len(got) < len(ids) and time.monotonic() - t0 < timeout and alive():
                for msg in self.consumer.consume(1000, timeout=0.2):
                    if msg.error() is None and msg.key() is not None:
                        key = msg.key().decode()
                        if key in ids and key not in got:
                            got[key] = msg.timestamp()[1]
                if time.monotonic() - last_note >= PROGRESS_EVERY_S:
                    last_note = time.monotonic()
                    typer.echo(f"    {len(got):,}/{len(ids):,} predictions after {last_note - t0:.0f}s")
        finally:
            self.consumer.close()
        return got


def measure(settings: Settings, out_topic: str, messages: Messages, rate: float | None, timeout: float,
            alive: Callable[[], bool] = lambda: True) -> dict[str, Any]:
    """Produce ``messages`` and wait for their predictions on ``out_topic``: throughput and latency."""
    watcher = PredictionWatcher(settings, out_topic)
    producer = RequestProducer(settings)
    produce_s = producer.send(messages, rate)
    got = watcher.wait({key for key, _ in messages}, timeout, alive)
    out: dict[str, Any] = {"requests": len(messages), "offered_rate": rate, "produce_s": round(produce_s, 3),
                           "produced_per_s": round(len(messages) / produce_s), "predicted": len(got)}
    if got:
        latency = np.array([got[k] - producer.sent_ms[k] for k in got], dtype="float64")
        span_s = (max(got.values()) - min(producer.sent_ms.values())) / 1000
        out |= {"first_request_to_last_prediction_s": round(span_s, 3),
                "events_per_s": round(len(got) / span_s, 1) if span_s > 0 else None,
                "latency_ms": {name: round(float(np.percentile(latency, q)), 1)
                               for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}}
    return out


def phases(label: str, settings: Settings, out_topic: str, source: RequestSource, backlog: int, rate: float,
           rate_seconds: float, timeout: float, alive: Callable[[], bool],
           cpu: Callable[[], dict[str, float]] | None = None, backlog_rounds: int = 1) -> dict[str, Any]:
    """Warm-up, then ``backlog_rounds`` backlogs as fast as possible, then a fixed rate; waits stop early if
    ``alive()`` turns False. The backlog recorded is the round of median throughput, with every round's events/s.
    ``cpu``: CPU seconds so far by role (``tree_cpu``); the backlogs' share of each, per prediction, is recorded."""
    typer.echo(f"  {label}: warm-up with {WARMUP_REQUESTS} requests")
    warm = measure(settings, out_topic, source.messages(f"{label}-warm", WARMUP_REQUESTS), None, timeout, alive)
    if warm["predicted"] < WARMUP_REQUESTS:
        raise RuntimeError(f"{label}: {warm['predicted']}/{WARMUP_REQUESTS} warm-up predictions within {timeout:.0f}s")
    before = cpu() if cpu else {}
    rounds = []
    for i in range(backlog_rounds):
        typer.echo(f"  {label}: backlog {i + 1} of {backlog_rounds}, {backlog:,} requests produced as fast as possible")
        rounds.append(measure(settings, out_topic, source.messages(f"{label}-backlog{i}", backlog), None, timeout,
                              alive))
        typer.echo(f"  {label}: {_line(rounds[-1])}")
    burst = median_round(rounds)
    predicted = sum(r["predicted"] for r in rounds)
    if cpu and predicted:
        after = cpu()
        burst["cpu_us_per_event"] = {role: round((after[role] - before.get(role, 0.0)) / predicted * 1e6, 1)
                                     for role in after}
    if backlog_rounds > 1:
        typer.echo(f"  {label}: backlog median {burst.get('events_per_s')} events/s")
    count = round(rate * rate_seconds)
    typer.echo(f"  {label}: {count:,} requests at {rate:g}/s")
    steady = measure(settings, out_topic, source.messages(f"{label}-rate", count), rate, timeout, alive)
    typer.echo(f"  {label}: {_line(steady)}")
    return {"backlog": burst, "fixed_rate": steady}


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The backlog round of median throughput (the lower middle one of an even count; a round that predicted
    nothing counts as 0 events/s), with every round's events/s under ``rounds_events_per_s``."""
    middle = common.median_run(rounds, lambda r: r.get("events_per_s") or 0.0)
    return dict(middle) | {"rounds_events_per_s": [r.get("events_per_s") for r in rounds]}


def _line(result: dict[str, Any]) -> str:
    lat = result.get("latency_ms", {})
    return (f"{result['predicted']:,}/{result['requests']:,} predicted, {result.get('events_per_s')} events/s, "
            f"latency p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms")


# --------------------------------------------------------------------------------------------------- the loop
def run_loop(settings: Settings, out_topic: str, group_id: str, ready: Event, stop: Event) -> None:
    """The baseline: consume, validate, features in-process, score over HTTP, produce, commit."""
    from confluent_kafka import TopicPartition
    from pydantic import ValidationError

    from core.events import Prediction, TripRequest
    from speed.predictor import request_columns
    from speed.stream import PredictionClient
    from workloads.taxi import features

    topic = settings.kafka.trip_requests_topic
    consumer = kafka.consumer(settings, group_id)
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
                     for p in partitions])  # from the end: the measured phases start after this
    producer = kafka.producer(settings, **{"linger.ms": PRODUCER_LINGER_MS})
    client = PredictionClient(settings)
    chunk = settings.speed.stream_http_batch
    ready.set()
    try:
        while not stop.is_set():
            messages = [m for m in consumer.consume(LOOP_BATCH, timeout=LOOP_POLL_S) if m.error() is None]
            if not messages:
                continue
            trips: list[TripRequest] = []
            event_ts: list[dt.datetime] = []
            for msg in messages:
                try:
                    trips.append(TripRequest.model_validate_json(msg.value()))
                except ValidationError:
                    continue  # the stream dead-letters these; the benchmark sends none
                event_ts.append(dt.datetime.fromtimestamp(msg.timestamp()[1] / 1000, dt.UTC))
            for start in range(0, len(trips), chunk):
                part = trips[start:start + chunk]
                columns = features.compute_numpy(request_columns(part))
                reply = client.score([t.trip_id for t in part],
                                     {name: columns[name].tolist() for name in features.FEATURE_NAMES})
                scored = dt.datetime.now(dt.UTC)
                for p, ev in zip(reply["predictions"], event_ts[start:start + chunk]):
                    out = Prediction(trip_id=p["trip_id"], model_version=reply["model_version"],
                                     predicted_duration_s=p["predicted_duration_s"], event_ts=ev, scored_ts=scored)
                    _produce(producer, out_topic, p["trip_id"].encode(), out.model_dump_json().encode())
            if producer.flush(60) != 0:
                raise RuntimeError(f"could not deliver predictions to {out_topic}")
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()


# --------------------------------------------------------------------------------------------------- the Spark floor
def run_spark_floor(settings: Settings, out_topic: str, checkpoint: str, ready: Event, stop: Event) -> None:
    """The floor of the job's latency: the same Kafka source and sink (``speed.stream.kafka_source`` and
    ``kafka_sink``: trigger, master, tasks, fetch wait, progress tracking) copying each request unchanged to
    ``out_topic``, with neither parsing nor features nor scoring."""
    from pyspark.sql import functions as F

    from core.spark import build_session
    from speed.stream import kafka_sink, kafka_source

    spark = build_session(settings, "lambdaml-bench-spark-floor", settings.speed.jvm_options)  # as the job's
    spark.sparkContext.setLogLevel("WARN")
    source = kafka_source(spark, settings).select(F.lit(out_topic).alias("topic"), "key", "value")
    query = kafka_sink(source, settings, "bench_spark_floor", checkpoint)
    ready.set()
    try:
        while not stop.is_set() and query.isActive:
            stop.wait(0.5)
        if query.exception() is not None:
            raise RuntimeError(f"the Spark floor query failed: {query.exception()}")
    finally:
        query.stop()
        spark.stop()


def spawned(target: Callable, args: tuple, name: str, label: str, body: Callable[[Any], Any]) -> Any:
    """Run ``target(*args, ready, stop)`` in a fresh process, then ``body(process)`` once it is ready; stop it
    after."""
    spawn = multiprocessing.get_context("spawn")
    ready, stop = spawn.Event(), spawn.Event()
    worker = spawn.Process(target=target, args=(*args, ready, stop), name=name)
    worker.start()
    try:
        deadline = time.monotonic() + 120
        while not ready.wait(0.5):
            if not worker.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{label} did not start within 120s (exit code {worker.exitcode})")
        return body(worker)
    finally:
        stop.set()
        worker.join(60)
        if worker.is_alive():
            worker.terminate()
            worker.join(10)


# --------------------------------------------------------------------------------------------------- CPU by role
def tree_cpu(*roots: tuple[str, int | None]) -> dict[str, float]:
    """CPU seconds (user + system) so far of the live processes under each ``(role, pid)``: under a Spark driver,
    a JVM counts as ``jvm``, a Python process under a JVM as ``python_workers`` (Spark's workers), the rest as
    the role itself (``driver``: the Python process that started the JVM); under any other root, every process
    counts as its role (e.g. ``service``: gunicorn's master and workers)."""
    import psutil

    out: dict[str, float] = {}
    for role, pid in roots:
        if pid is None:
            continue
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        jvms = {p.pid for p in procs if _name(p) == "java"} if role == "driver" else set()
        for p in procs:
            try:
                times = p.cpu_times()
                parents = {q.pid for q in p.parents()}
            except psutil.Error:
                continue
            kind = "jvm" if p.pid in jvms else "python_workers" if parents & jvms else role
            out[kind] = out.get(kind, 0.0) + times.user + times.system
    return out


def _name(process: Any) -> str:
    try:
        return process.name()
    except Exception:  # noqa: BLE001 - psutil.Error: gone, or not ours
        return ""


# --------------------------------------------------------------------------------------------------- stream job facts
def batch_stats(settings: Settings, since_ms: int, until_ms: int) -> dict[str, Any]:
    """The job's per-batch metrics (``metrics`` topic) of the non-empty batches between two times."""
    from confluent_kafka import TopicPartition

    topic = settings.kafka.metrics_topic
    consumer = kafka.consumer(settings, f"bench-metrics-{uuid.uuid4().hex[:8]}")
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    by_batch: dict[str, dict[str, float]] = {}
    idle = 0
    try:
        while idle < 3:
            msgs = consumer.consume(1000, timeout=0.5)
            idle = 0 if msgs else idle + 1
            for msg in msgs:
                if msg.error() is None and since_ms <= msg.timestamp()[1] <= until_ms:
                    event = json.loads(msg.value())
                    by_batch.setdefault(event["tags"]["batch_id"], {})[event["name"]] = event["value"]
    finally:
        consumer.close()
    batches = [b for b in by_batch.values() if b.get("stream.rows", 0) > 0]
    if not batches:
        return {"batches": 0}
    rows = np.array([b["stream.rows"] for b in batches])
    seconds = np.array([b["stream.seconds"] for b in batches])
    return {"batches": len(batches), "rows_p50": float(np.median(rows)), "rows_max": int(rows.max()),
            "seconds_p50": round(float(np.median(seconds)), 3), "seconds_max": round(float(seconds.max()), 3)}


BATCH_LOG = re.compile(r"batch (\d+): .*; durations (\{.*\})")


def phase_stats(settings: Settings, log_start: int = 0) -> dict[str, float]:
    """Where the job's batches spent their time: the median of each of Spark's ``durationMs`` phases
    (``queryPlanning``, ``addBatch``, ``latestOffset``, ...) over the non-empty batches its log has recorded since
    byte ``log_start``."""
    log_file = StreamJob(settings).proc.log_file
    if not log_file.exists():
        return {}
    with log_file.open(errors="replace") as f:
        f.seek(log_start)
        found = [json.loads(m.group(2)) for m in map(BATCH_LOG.search, f) if m]
    return {phase: float(np.median([d[phase] for d in found if phase in d]))
            for phase in sorted({p for d in found for p in d})}


ERROR_LINE = re.compile(r"^(\S*(Exception|Error)\b:?|.*\b(ERROR|FATAL)\b)")


def log_errors(text: str, limit: int = 8) -> list[str]:
    """The distinct error lines of a log excerpt, first ones first."""
    seen: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if ERROR_LINE.search(line) and line not in seen:
            seen.append(line[:600])
    return seen[:limit]


def now_ms() -> int:
    return int(time.time() * 1000)


def try_trigger(settings: Settings, trigger: str, source: RequestSource, count: int, rate: float) -> list[dict]:
    """Start the job with ``trigger``, send ``count`` requests and record what happens; if nothing is predicted,
    once more with Spark's real-time allowlist check off (what its error message offers)."""
    attempts = []
    for label, extra_conf in (("as configured", {}), (f"{ALLOWLIST_CHECK}=false", {ALLOWLIST_CHECK: "false"})):
        spark = settings.spark.model_copy(update={"extra_conf": settings.spark.extra_conf | extra_conf})
        rt = with_speed(settings.model_copy(update={"spark": spark}), stream_trigger=trigger,
                        stream_checkpoint=str(settings.runtime_dir / "checkpoints" / f"trigger-{len(attempts)}"))
        typer.echo(f"\n== stream with trigger {trigger!r}, {label}")
        attempts.append({"spark_conf": label, **run_job(rt, source.messages(f"trigger-{len(attempts)}", count), rate)})
        if attempts[-1].get("result", {}).get("predicted"):
            break
    return attempts


def run_job(settings: Settings, messages: Messages, rate: float) -> dict[str, Any]:
    """Start the job, send ``messages`` at ``rate``, wait for their predictions while it lives; its errors."""
    job = StreamJob(settings)
    log_start = job.proc.log_file.stat().st_size if job.proc.log_file.exists() else 0
    out: dict[str, Any] = {}
    stack = Stack(settings, catalog=(StreamJob,), echo=typer.echo)
    try:
        stack.up()
        out["passed_ready_check"] = True
        out["result"] = measure(settings, settings.kafka.trip_predictions_topic, messages, rate, 120.0,
                                alive=lambda: job.proc.pid() is not None)
        typer.echo(f"  {_line(out['result'])}")
    except StackError as exc:
        out["passed_ready_check"] = False
        typer.echo(f"  the job did not start: {str(exc).splitlines()[0]}")
    finally:
        out["alive_at_the_end"] = job.proc.pid() is not None
        stack.down()
    with job.proc.log_file.open() as log:
        log.seek(log_start)
        out["errors"] = log_errors(log.read())
    for line in out["errors"]:
        typer.echo(f"  log: {line}")
    return out


# --------------------------------------------------------------------------------------------------- the CLI
app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    backlog: Annotated[int, typer.Option(help="Requests of the throughput phase, produced as fast as possible.")]
    = 20_000,
    backlog_rounds: Annotated[int, typer.Option(min=1, help="Backlogs in a row for each system; the median one's "
                                                       "throughput counts.")] = 3,
    rate: Annotated[float, typer.Option(help="Requests per second of the latency phase.")] = 200.0,
    rate_seconds: Annotated[float, typer.Option(help="Seconds of the latency phase.")] = 30.0,
    real_time_trigger: Annotated[str, typer.Option(help="The trigger tried last ('' to skip).")]
    = "realTime:5 seconds",
    real_time_requests: Annotated[int, typer.Option(help="Requests sent to the real-time job, at --rate.")] = 1000,
    timeout: Annotated[float, typer.Option(help="Longest wait for the predictions of one phase, seconds.")] = 240.0,
    spark_floor: Annotated[bool, typer.Option(help="Also measure the Spark floor: the job's Kafka source and sink "
                                                   "copying requests unchanged.")] = True,
    lake_sink_ab: Annotated[bool, typer.Option(help="Also measure the job without its lake sink (the master log "
                                                    "query beside the scoring one): what the sink costs.")] = True,
    port: Annotated[int, typer.Option(help="Private port of the prediction service.")] = 18210,
    seed: Annotated[int, typer.Option(help="Seed of the generated trips.")] = 7,
    out: Annotated[Path | None, typer.Option(help=common.OUT_HELP)] = None,
) -> None:
    """Throughput and latency of the streaming job against a plain consumer loop; then the real-time trigger."""
    started = time.monotonic()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    source = RequestSource(max(backlog, round(rate * rate_seconds), WARMUP_REQUESTS), seed)
    with PrivateSpeedLayer(get_settings(), port, NAME, extra_topics=(LOOP_TOPIC, FLOOR_TOPIC, NO_LAKE_TOPIC)) as layer:
        s = layer.settings
        loop_topic = layer.extra_topics[LOOP_TOPIC]
        layer.publish_model()
        serve_model(s)

        typer.echo(f"\n== stream: {s.kafka.trip_requests_topic} -> {s.kafka.trip_predictions_topic}, "
                   f"trigger {s.speed.stream_trigger}"
                   + (", with the lake sink beside it" if s.speed.lake_sink else ""))
        job = Stack(s, catalog=(StreamJob, LakeSinkJob), echo=typer.echo)
        t0 = time.monotonic()
        job.up()
        since = now_ms()
        try:
            stream = {"start_s": round(time.monotonic() - t0, 1)} | phases(
                "stream", s, s.kafka.trip_predictions_topic, source, backlog, rate, rate_seconds, timeout,
                alive=lambda: StreamJob(s).proc.pid() is not None, backlog_rounds=backlog_rounds,
                cpu=lambda: tree_cpu(("driver", StreamJob(s).proc.pid()), ("service", PredictionAPI(s).proc.pid()),
                                     ("lake_sink", LakeSinkJob(s).proc.pid())))
        finally:
            job.down()
        stream["batches"] = batch_stats(s, since, now_ms()) | {"duration_ms_p50": phase_stats(s)}

        no_lake = None
        if lake_sink_ab and s.speed.lake_sink:
            no_lake_topic = layer.extra_topics[NO_LAKE_TOPIC]
            s2 = with_speed(s.model_copy(update={"kafka": s.kafka.model_copy(
                update={"trip_predictions_topic": no_lake_topic})}),
                lake_sink=False, stream_checkpoint=str(s.runtime_dir / "checkpoints" / "no-lake-sink"))
            typer.echo(f"\n== stream without its lake sink: {s2.kafka.trip_requests_topic} -> {no_lake_topic}")
            job = Stack(s2, catalog=(StreamJob,), echo=typer.echo)
            t0 = time.monotonic()
            job.up()
            try:
                no_lake = {"start_s": round(time.monotonic() - t0, 1)} | phases(
                    "stream_no_lake_sink", s2, no_lake_topic, source, backlog, rate, rate_seconds, timeout,
                    alive=lambda: StreamJob(s2).proc.pid() is not None, backlog_rounds=backlog_rounds,
                    cpu=lambda: tree_cpu(("driver", StreamJob(s2).proc.pid()),
                                         ("service", PredictionAPI(s2).proc.pid())))
            finally:
                job.down()

        floor = None
        if spark_floor:
            floor_topic = layer.extra_topics[FLOOR_TOPIC]
            typer.echo(f"\n== Spark floor: {s.kafka.trip_requests_topic} -> {floor_topic}, copied unchanged, "
                       f"trigger {s.speed.stream_trigger}")
            t0 = time.monotonic()
            floor = spawned(run_spark_floor, (s, floor_topic, str(s.runtime_dir / "checkpoints" / "spark-floor")),
                            "bench-spark-floor", "the Spark floor query",
                            lambda worker: {"start_s": round(time.monotonic() - t0, 1)} | phases(
                                "spark_floor", s, floor_topic, source, backlog, rate, rate_seconds, timeout,
                                worker.is_alive, cpu=lambda: tree_cpu(("driver", worker.pid)),
                                backlog_rounds=backlog_rounds))

        typer.echo(f"\n== loop: consume({LOOP_BATCH}) -> features -> POST /v1/predict/features -> {loop_topic}")
        loop = spawned(run_loop, (s, loop_topic, f"bench-loop-{layer.unique}"), "bench-loop", "the consumer loop",
                       lambda worker: phases("loop", s, loop_topic, source, backlog, rate, rate_seconds, timeout,
                                             worker.is_alive, backlog_rounds=backlog_rounds,
                                             cpu=lambda: tree_cpu(("loop", worker.pid),
                                                                  ("service", PredictionAPI(s).proc.pid()))))

        real_time = try_trigger(s, real_time_trigger, source, real_time_requests, rate) if real_time_trigger else None
        speed = s.speed

    targets = {
        "stream_over_loop_throughput": check_target(_ratio(stream, loop), 0.5, below=False),
        "stream_p50_ms": check_target(stream["fixed_rate"].get("latency_ms", {}).get("p50"), 250.0, below=True),
        "stream_p99_ms": check_target(_p(stream, "p99"), P99_TARGET_MS, below=True),
        "stream_jvm_cpu_us_per_event": check_target(_jvm_cpu(stream), JVM_CPU_TARGET_US, below=True),
    }
    ratios: dict[str, float] = {}
    if targets["stream_over_loop_throughput"]["value"] is not None:
        ratios["stream/loop events_per_s (backlog)"] = targets["stream_over_loop_throughput"]["value"]
    summary = [
        common.comparison("stream backlog", stream["backlog"].get("events_per_s"), "loop backlog",
                          loop["backlog"].get("events_per_s"), "events/s", higher_is_better=True,
                          target="ratio >= 0.5", met=targets["stream_over_loop_throughput"]["met"]),
        common.comparison(f"stream p50 at {rate:g}/s", _p50(stream), f"loop p50 at {rate:g}/s", _p50(loop), "ms",
                          higher_is_better=False, target="stream p50 <= 250 ms", met=targets["stream_p50_ms"]["met"]),
        common.comparison(f"stream p99 at {rate:g}/s", _p(stream, "p99"), f"loop p99 at {rate:g}/s", _p(loop, "p99"),
                          "ms", higher_is_better=False, target=f"stream p99 <= {P99_TARGET_MS:g} ms",
                          met=targets["stream_p99_ms"]["met"]),
        common.comparison("stream JVM CPU an event (backlog)", _jvm_cpu(stream),
                          "Spark floor JVM CPU an event" if floor else "loop CPU an event",
                          _jvm_cpu(floor) if floor else (loop["backlog"].get("cpu_us_per_event") or {}).get("loop"),
                          "us", higher_is_better=False, target=f"<= {JVM_CPU_TARGET_US:g} us",
                          met=targets["stream_jvm_cpu_us_per_event"]["met"]),
    ]
    if no_lake is not None:
        summary.append(common.comparison(f"stream p50 at {rate:g}/s", _p50(stream),
                                         f"stream without lake sink p50 at {rate:g}/s", _p50(no_lake), "ms",
                                         higher_is_better=False))
        summary.append(common.comparison("stream backlog", stream["backlog"].get("events_per_s"),
                                         "stream without lake sink backlog", no_lake["backlog"].get("events_per_s"),
                                         "events/s", higher_is_better=True))
    if floor is not None:
        summary.append(common.comparison(f"stream p50 at {rate:g}/s", _p50(stream),
                                         f"Spark floor p50 at {rate:g}/s (copy, same source, sink, trigger)",
                                         _p50(floor), "ms", higher_is_better=False))
        if _p50(floor) is not None:
            targets["spark_floor_p50_ms"] = check_target(_p50(floor), 250.0, below=True)
    common.write_result(
        NAME,
        parameters={"backlog": backlog, "backlog_rounds": backlog_rounds, "warmup_requests": WARMUP_REQUESTS,
                    "rate": rate, "rate_seconds": rate_seconds,
                    "stream_trigger": speed.stream_trigger, "stream_http_batch": speed.stream_http_batch,
                    "lake_sink": speed.lake_sink, "lake_sink_trigger": speed.lake_sink_trigger,
                    "stream_max_offsets_per_trigger": speed.stream_max_offsets_per_trigger,
                    "topic_partitions": s.kafka.partitions, "loop_batch": LOOP_BATCH, "loop_poll_s": LOOP_POLL_S,
                    "producer_linger_ms": PRODUCER_LINGER_MS, "real_time_trigger": real_time_trigger,
                    "real_time_requests": real_time_requests,
                    "service": {"workers": speed.workers, "threads": speed.threads,
                                "micro_batching": speed.micro_batching},
                    "spark_master": s.spark.master,
                    "model": "core.model.ModelConfig() (production size), random weights",
                    "note": "stream and loop run one after the other on the same 2 cores, beside the running "
                            "local stack; latency = prediction's Kafka timestamp - request's",
                    "load_average_at_start": load_at_start,
                    "uncommitted_changes": uncommitted("speed", "core", "deploy"),
                    "elapsed_s": round(time.monotonic() - started, 1)},
        measurements={"stream": stream, "stream_no_lake_sink": no_lake, "spark_floor": floor, "loop": loop,
                      "real_time_trigger": real_time,
                      "targets": targets},
        ratios=ratios,
        echo=typer.echo,
        summary=summary,
        out=out,
    )


def _p50(result: dict[str, Any]) -> float | None:
    return _p(result, "p50")


def _p(result: dict[str, Any], name: str) -> float | None:
    return result["fixed_rate"].get("latency_ms", {}).get(name)


def _jvm_cpu(result: dict[str, Any] | None) -> float | None:
    return ((result or {}).get("backlog", {}).get("cpu_us_per_event") or {}).get("jvm")


def _ratio(stream: dict[str, Any], loop: dict[str, Any]) -> float | None:
    a, b = stream["backlog"].get("events_per_s"), loop["backlog"].get("events_per_s")
    return a / b if a and b else None


if __name__ == "__main__":
    app()

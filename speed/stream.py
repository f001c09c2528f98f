"""The streaming job: ``<workload>.requests`` -> validate -> features -> prediction service -> ``.predictions``.

One Spark application and one query serve every workload the service serves (``speed.predictor.served_workloads``):
it reads all their request topics (``kafka.for_workload``: ``trips.requests`` for taxi, ``bike.requests``, ...)
and hands each micro-batch's raw events (bytes and source coordinates) to Spark's Python workers
(``mapInArrow``). There every event is read, by the request model of the workload whose topic it came from,
with ``core.events.parse_request``, the same function ``POST /v1/<workload>/predict`` reads a body with, so the
stream and the API accept and refuse exactly the same bytes, with the same reason. A refused event becomes a
dead letter on its workload's dead-letter topic (``trips.dlq``, ``bike.dlq``) with the reason, a bounded head of
the payload, the payload's length and sha256, and its source topic/partition/offset; the stream carries on.
Valid events get their features from the in-process form of their workload's features and are scored by the
prediction service in calls of ``stream_http_batch`` requests (also the size of the Arrow batches Spark sends)
over one kept-alive connection per worker. The workers return finished Kafka records (topic, key, JSON value), which the
job's Kafka sink writes. A micro-batch runs in ``stream_tasks`` tasks, one wave on the local master's
cores. A query listener turns each batch's progress and observed metrics into ``metrics`` events and
the status file.

No single input can stop the stream: every record it writes is bounded (``dead_letter_payload_bytes``,
``stream_record_max_bytes``), and a failed query is restarted with backoff (``supervise``).

Delivery is at least once: offsets are committed only after the sink wrote a
batch, so a job killed mid-batch redoes it from the checkpoint (with
asynchronous progress tracking, the batches of up to one progress interval).
Redelivered predictions carry the same key, and keyed upserts downstream
absorb them. An unreachable service is retried with backoff (up to
``stream_retry_max_s``); after that the query fails without committing the
batch, and the job restarts it from the checkpoint.

Run it with ``lambdaml speed up`` (or ``python -m speed.stream``).
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from core.events import InvalidRequest, MetricEvent, parse_request, request_model_of
from core.settings import Settings, WorkloadTopics
from core.workload import DEFAULT, Workload

if TYPE_CHECKING:
    import pyarrow as pa
    from pydantic import BaseModel
    from pyspark.sql import DataFrame

log = logging.getLogger("lambdaml.speed.stream")
QUERY_NAME = "speed_predictions"
STATUS_FILE = "stream-status.json"  # in <runtime>/speed/


# --------------------------------------------------------------------------------------------------- pure transforms
SOURCE_COLUMNS = ("source_topic", "source_partition", "source_offset", "event_ts", "value")
OUTPUT_SCHEMA = ("topic string, key string, value binary, dead boolean, latency_ms double, model_version string, "
                 "service_retries int")
OBSERVED = "batch"
RECORD_TOO_LARGE = "record_too_large"


def source_rows(kafka_rows: "DataFrame") -> "DataFrame":
    """Kafka rows to what the Python workers read: the raw value and its source coordinates."""
    from pyspark.sql import functions as F

    return kafka_rows.select(F.col("topic").alias("source_topic"), F.col("partition").alias("source_partition"),
                             F.col("offset").alias("source_offset"), F.col("timestamp").alias("event_ts"), "value")


def _iso(ts: dt.datetime | None) -> str | None:
    """A UTC timestamp as the contract writes it: microseconds and ``Z``."""
    if ts is None:
        return None
    ts = ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Route:
    """Where the events of one request topic go: the workload that reads them and its topics."""

    workload: Workload
    topics: WorkloadTopics

    @property
    def model(self) -> type["BaseModel"]:
        return request_model_of(self.workload.name)


def routes(settings: Settings) -> dict[str, Route]:
    """Each served workload's route, by its request topic."""
    from speed.predictor import served_workloads

    out = {}
    for wl in served_workloads(settings):
        topics = settings.kafka.for_workload(wl.name)
        out[topics.requests] = Route(wl, topics)
    return out


def _fallback(table: dict[str, Route]) -> Route:
    """The route of an event from a topic the job does not read (it subscribes to the routes' topics only)."""
    return next((r for r in table.values() if r.workload.name == DEFAULT), next(iter(table.values())))


@dataclass
class ReadBatch:
    """One Arrow batch of events, read: the valid requests with their row numbers and workloads, and a dead letter
    (topic, key, value) for every refused row."""

    n: int
    values: list[bytes | None] = field(default_factory=list)  # the raw events, once out of Arrow
    source: list[tuple[str, int, int]] = field(default_factory=list)  # (topic, partition, offset) of each
    requests: list["BaseModel"] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    workloads: list[str] = field(default_factory=list)  # each valid request's workload
    dead: dict[int, tuple[str, bytes]] = field(default_factory=dict)


def dead_letter(raw: bytes | None, reason: str, coordinates: tuple[str, int, int], keep_bytes: int) -> bytes:
    """A dead letter: the reason, the first ``keep_bytes`` of the payload made valid UTF-8, the payload's length
    and sha256, and where it came from. Its size is bounded whatever the payload: escaping can grow a kept byte
    to six (``\\u0001``), so at most about ``6 * keep_bytes`` plus the reason."""
    topic, partition, offset = coordinates
    return _dumps({
        "schema_version": 1, "payload": raw[:keep_bytes].decode("utf-8", "replace") if raw and keep_bytes else None,
        "error": reason, "source_topic": topic, "source_partition": partition, "source_offset": offset,
        "payload_bytes": None if raw is None else len(raw),
        "payload_sha256": None if raw is None else hashlib.sha256(raw).hexdigest(),
        "payload_truncated": raw is not None and len(raw) > keep_bytes, "ts": _iso(dt.datetime.now(dt.UTC)),
    })


def read_batch(batch: "pa.RecordBatch", settings: Settings, table: dict[str, Route] | None = None) -> ReadBatch:
    """Read every event of a batch (``source_rows`` columns) with ``core.events.parse_request``, by the request
    model of the workload whose topic it came from."""
    keep = settings.speed.dead_letter_payload_bytes
    table = table or routes(settings)
    fallback = _fallback(table)
    out = ReadBatch(batch.num_rows, batch.column("value").to_pylist(),
                    list(zip(*(batch.column(c).to_pylist() for c in SOURCE_COLUMNS[:3]))))
    for i, raw in enumerate(out.values):
        route = table.get(out.source[i][0], fallback)
        try:
            out.requests.append(parse_request(raw, route.model))
            out.rows.append(i)
            out.workloads.append(route.workload.name)
        except InvalidRequest as exc:
            out.dead[i] = (route.topics.dlq, dead_letter(raw, exc.reason, out.source[i], keep))
    return out


def prediction(request: "BaseModel", predicted: float, version: str, event_ts: dt.datetime | None,
               scored_ts: dt.datetime, workload: Workload | None = None) -> bytes:
    """A prediction event (taxi's: ``core.events.Prediction``): the key, the workload's predicted value
    (``predicted_duration_s``, ``overtime_probability``) and the request's stored inputs riding along."""
    from core.workload import default

    wl = workload or default()
    req = wl.request
    out = {"schema_version": 1, req.key: getattr(request, req.key), "model_version": version,
           wl.prediction_field: predicted, "event_ts": _iso(event_ts), "scored_ts": _iso(scored_ts)}
    for f in req.echoed:
        value = getattr(request, f.name)
        out[f.name] = _iso(value) if f.kind == "timestamp" else value
    return _dumps(out)


def bounded(topic: str, key: str, value: bytes, raw: bytes | None, coordinates: tuple[str, int, int],
            settings: Settings, dlq: str | None = None) -> tuple[str, str, bytes]:
    """The record as it is, or, over ``stream_record_max_bytes``, a small ``record_too_large`` dead letter in its
    place: a record the sink refuses would fail the batch on every replay."""
    limit = settings.speed.stream_record_max_bytes
    if len(value) <= limit:
        return topic, key, value
    reason = (f"{RECORD_TOO_LARGE}: the record for {topic} was {len(value)} bytes, over stream_record_max_bytes "
              f"({limit}); the payload is at its source coordinates")
    return (dlq or settings.kafka.dead_letter_topic, "/".join(map(str, coordinates)),
            dead_letter(raw, reason, coordinates, 0))


def trigger_kwargs(spec: str) -> dict[str, Any]:
    """``processingTime:<interval>``, ``availableNow`` or ``realTime:<interval>`` to ``DataStreamWriter.trigger``."""
    kind, _, arg = spec.partition(":")
    if kind == "availableNow" and not arg:
        return {"availableNow": True}
    if kind in ("processingTime", "realTime") and arg.strip():
        return {kind: arg.strip()}
    raise ValueError(f"stream_trigger {spec!r}: use processingTime:<interval>, availableNow or realTime:<interval> "
                     "(LAMBDAML_SPEED__STREAM_TRIGGER)")


# --------------------------------------------------------------------------------------------------- I/O
class ServiceUnavailable(RuntimeError):
    pass


class PredictionClient:
    """Batched calls to the prediction service over one kept-alive connection, retried with backoff."""

    def __init__(self, settings: Settings):
        import requests

        self.settings = settings
        self.session = requests.Session()
        if settings.speed.api_key:
            self.session.headers["X-API-Key"] = settings.speed.api_key.get_secret_value()
        self.base = settings.speed.app_url  # gunicorn itself: this client sheds its own load
        self.url = f"{self.base}/v1/predict/features"
        self.calls = 0
        self.retries = 0

    def _post(self, url: str, body: bytes) -> dict[str, Any]:
        import requests

        try:
            resp = self.session.post(url, data=body, headers={"Content-Type": "application/json"},
                                     timeout=self.settings.speed.request_timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServiceUnavailable(f"{url}: {exc.__class__.__name__}") from exc
        if resp.status_code in (502, 503, 504):
            raise ServiceUnavailable(f"{url}: HTTP {resp.status_code} {resp.text[:200]}")
        if resp.status_code != 200:
            raise RuntimeError(f"{url} refused a batch: HTTP {resp.status_code} {resp.text[:300]}")
        self.calls += 1
        return resp.json()

    def score(self, ids: list[str], columns: dict[str, list], workload: str = DEFAULT) -> dict[str, Any]:
        """One call of ``POST /v1/<workload>/predict/features`` (taxi's: ``/v1/predict/features``), retried with
        backoff while the service is unavailable."""
        from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

        if workload == DEFAULT:
            url, body = self.url, {"trip_ids": ids, "features": columns}
        else:
            url, body = f"{self.base}/v1/{workload}/predict/features", {"ids": ids, "features": columns}
        data = json.dumps(body, separators=(",", ":")).encode()
        for attempt in Retrying(stop=stop_after_delay(self.settings.speed.stream_retry_max_s),
                                wait=wait_exponential_jitter(multiplier=0.2, max=10.0),
                                retry=retry_if_exception_type(ServiceUnavailable), reraise=True,
                                before_sleep=self._note_retry):
            with attempt:
                return self._post(url, data)
        raise AssertionError("unreachable")

    def _note_retry(self, state) -> None:
        self.retries += 1
        log.warning("prediction service unavailable (%s); retry %d in %.1fs", state.outcome.exception(),
                    state.attempt_number, state.next_action.sleep if state.next_action else 0)


_CLIENT: "PredictionClient | None" = None


def _client(settings: Settings) -> PredictionClient:
    """One client per Python worker; Spark reuses its workers, so the connection stays open across batches."""
    global _CLIENT
    if _CLIENT is None or _CLIENT.settings != settings:
        _CLIENT = PredictionClient(settings)
    return _CLIENT


def score_batch(client: PredictionClient, batch: "pa.RecordBatch", settings: Settings) -> "pa.RecordBatch":
    """One Arrow batch of raw events (``source_rows`` columns) to the Kafka records it produces
    (``OUTPUT_SCHEMA``): a prediction for each valid event on its workload's prediction topic, keyed by the
    request's key, and a dead letter for each refused one on its workload's dead-letter topic, keyed by its source
    coordinates; with what the batch's observed metrics read. Valid events are scored per workload in calls of up
    to ``stream_http_batch`` requests, their features by the workload's in-process form."""
    import pyarrow as pa

    from speed.predictor import request_columns

    chunk = settings.speed.stream_http_batch
    table = routes(settings)
    by_name = {r.workload.name: r for r in table.values()}
    read = read_batch(batch, settings, table)
    raws, source = read.values, read.source
    event_ts = [ts if ts is None or ts.tzinfo else ts.replace(tzinfo=dt.UTC) for ts in batch.column("event_ts").to_pylist()]
    records: list[tuple[str, str, bytes]] = [("", "", b"")] * read.n
    latency: list[float | None] = [None] * read.n
    versions: list[str | None] = [None] * read.n
    retries: list[int | None] = [None] * read.n
    for i, (topic, letter) in read.dead.items():
        records[i] = (topic, "/".join(map(str, source[i])), letter)
    for name, route in by_name.items():
        mine = [j for j, w in enumerate(read.workloads) if w == name]
        if not mine:
            continue
        wl, key = route.workload, route.workload.request.key
        requests, all_rows = [read.requests[j] for j in mine], [read.rows[j] for j in mine]
        columns = wl.features.compute_numpy(request_columns(requests, wl.request))
        for start in range(0, len(requests), chunk):
            part, rows = requests[start:start + chunk], all_rows[start:start + chunk]
            before = client.retries
            reply = client.score([getattr(r, key) for r in part],
                                 {f: columns[f][start:start + chunk].tolist() for f in wl.features.FEATURE_NAMES},
                                 name)
            now = dt.datetime.now(dt.UTC)
            for req, i, p in zip(part, rows, reply["predictions"]):
                value = prediction(req, p[wl.prediction_field], reply["model_version"], event_ts[i], now, wl)
                records[i] = (route.topics.predictions, getattr(req, key), value)
                if event_ts[i] is not None:
                    latency[i] = (now - event_ts[i]).total_seconds() * 1000.0
                versions[i], retries[i] = reply["model_version"], client.retries - before
    fallback = _fallback(table)
    records = [bounded(*r, raws[i], source[i], settings, table.get(source[i][0], fallback).topics.dlq)
               for i, r in enumerate(records)]
    dead_topics = {r.topics.dlq for r in table.values()}
    dead = [r[0] in dead_topics for r in records]
    return pa.RecordBatch.from_arrays(
        [pa.array([r[0] for r in records], pa.string()), pa.array([r[1] for r in records], pa.string()),
         pa.array([r[2] for r in records], pa.binary()), pa.array(dead, pa.bool_()),
         pa.array([None if d else x for d, x in zip(dead, latency)], pa.float64()),
         pa.array([None if d else x for d, x in zip(dead, versions)], pa.string()),
         pa.array([None if d else x for d, x in zip(dead, retries)], pa.int32())],
        names=["topic", "key", "value", "dead", "latency_ms", "model_version", "service_retries"])


_FROZEN = False


def _freeze_heap() -> None:
    """Once per Python worker, after its first task: move every object alive then (the imported modules: pyarrow,
    pandas, pydantic models, the workloads) out of the garbage collector's reach.

    Spark's worker daemon runs a full ``gc.collect()`` after every task of a reused worker, before it reads the
    next one. Over the imported heap (about 100k objects) a collection took 36-54 ms in a process with the same
    imports on the 2-core VM, and a py-spy recording of the job's worker at 200/s found it there 40% of the time;
    the median batch fell by 77-118 ms with the heap frozen (``bench/results/2026-12-05-*-stream-gc.md``). Frozen
    objects are never collected; what the tasks allocate afterwards still is."""
    global _FROZEN
    if not _FROZEN:
        gc.collect()
        gc.freeze()
        _FROZEN = True


def scorer(settings: Settings):
    """The ``mapInArrow`` function: runs in Spark's Python workers, one service call per ``stream_http_batch``."""

    def run(batches):
        client = _client(settings)
        for batch in batches:
            yield score_batch(client, batch, settings)
        _freeze_heap()

    return run


def observed(records: "DataFrame") -> "DataFrame":
    """Per-batch metrics computed by the same job (``observe``), read back from the query's progress."""
    from pyspark.sql import functions as F

    ok = ~F.col("dead")
    return records.observe(
        OBSERVED,
        F.count(F.lit(1)).alias("events"),
        F.coalesce(F.sum(ok.cast("int")), F.lit(0)).alias("rows"),
        F.coalesce(F.sum((~ok).cast("int")), F.lit(0)).alias("dead_letters"),
        F.percentile_approx("latency_ms", 0.5).alias("latency_ms_p50"),
        F.max("latency_ms").alias("latency_ms_max"),
        F.coalesce(F.max("service_retries"), F.lit(0)).alias("service_retries"),
        F.collect_set("model_version").alias("model_versions"),
    )


def records(kafka_rows: "DataFrame", settings: Settings) -> "DataFrame":
    """The job's whole transform: Kafka rows in, observed Kafka sink rows (``topic``, ``key``, ``value``) out."""
    out = observed(source_rows(kafka_rows).mapInArrow(scorer(settings), OUTPUT_SCHEMA))
    return out.select("topic", "key", "value")


class StatusFile:
    """``<runtime>/speed/<name>``: what ``lambdaml speed status``, platform health and the tests read of a job."""

    def __init__(self, settings: Settings, name: str = STATUS_FILE):
        self.path = settings.runtime_dir / "speed" / name
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sticky: dict[str, Any] = {}  # kept in every write: the restarts and the last failure
        self.scoring: dict[str, Any] = {}

    def write(self, status: dict[str, Any]) -> None:
        """Replace the scoring query's fields with ``status`` (``{}``: keep them) and write the file."""
        if status:
            self.scoring = status
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.sticky | self.scoring | {"ts": dt.datetime.now(dt.UTC).isoformat()},
                                  default=str))
        tmp.replace(self.path)


def batch_summary(progress: dict[str, Any]) -> dict[str, Any] | None:
    """A micro-batch's summary from its query progress (``StreamingQueryProgress.jsonValue()``) and the metrics
    the job observed; None for a batch that read nothing."""
    metrics = (progress.get("observedMetrics") or {}).get(OBSERVED)
    if not metrics or not metrics.get("events"):
        return None
    summary = {"batch_id": progress["batchId"], "rows": metrics["rows"], "dead_letters": metrics["dead_letters"],
               "seconds": round(progress.get("batchDuration", 0) / 1000, 3),
               "duration_ms": progress.get("durationMs", {}), "service_retries": metrics["service_retries"],
               "model_versions": sorted(metrics.get("model_versions") or [])}
    for name in ("latency_ms_p50", "latency_ms_max"):
        if metrics.get(name) is not None:
            summary[name] = round(float(metrics[name]), 1)
    return summary


def metric_events(summary: dict[str, Any]) -> list[MetricEvent]:
    """The run-time metrics one batch sends to the ``metrics`` topic."""
    return [MetricEvent(source="speed.stream", name=f"stream.{name}", value=summary[name],
                        tags={"batch_id": str(summary["batch_id"])})
            for name in ("rows", "dead_letters", "seconds", "latency_ms_p50") if name in summary]


def progress_listener(settings: Settings, status: StatusFile):
    """A listener (``core.spark.add_listener``) that turns each batch's progress into metrics, the status file and
    a log line. It runs on the driver, after the batch; the rows themselves never pass through it."""
    from core import kafka
    from core.spark import QueryListener

    class ProgressListener(QueryListener):
        def __init__(self) -> None:
            self.producer = kafka.producer(settings, **{"linger.ms": 5})
            self.batches = 0
            self.retries = 0

        def started(self, query_id: str) -> None:
            status.write({"state": "started", "batches": 0, "query_id": query_id})

        def progress(self, progress: dict) -> None:
            summary = batch_summary(progress)
            self.batches += 1
            if summary is None:
                return
            self.retries += summary["service_retries"]
            summary["service_retries"] = self.retries
            for metric in metric_events(summary):
                self.producer.produce(settings.kafka.metrics_topic, key=metric.source.encode(),
                                      value=metric.model_dump_json().encode())
            self.producer.poll(0)
            status.write({"state": "running", "batches": self.batches, "last": summary})
            log.info("batch %d: %d predicted, %d dead-lettered in %.2fs, p50 %s ms %s; durations %s",
                     summary["batch_id"], summary["rows"], summary["dead_letters"], summary["seconds"],
                     summary.get("latency_ms_p50"), summary["model_versions"], json.dumps(summary["duration_ms"]))

        def terminated(self, exception: str | None) -> None:
            self.producer.flush(10)
            status.write({"state": "failed" if exception else "stopped", "batches": self.batches,
                          "error": (exception or "")[:2000]})

    return ProgressListener()


WARM_UP_VALUE = b"warm-up: not an event"


def warm_up(spark, settings: Settings) -> float:
    """Run the job's Python side once, before the query starts, on one unreadable event a task (``stream_tasks``),
    from each request topic: Spark's Python workers start and import the job's modules, and the JVM compiles the
    Arrow path, now rather than in the first micro-batch of live events. The dead letters it makes are dropped, and
    no service is called. Returns the seconds it took."""
    tasks = max(settings.speed.stream_tasks, 1)
    now = dt.datetime.now(dt.UTC)
    events = [(topic, 0, -1, now, WARM_UP_VALUE) for topic in routes(settings) for _ in range(tasks)]
    t0 = time.monotonic()
    frame = spark.createDataFrame(spark.sparkContext.parallelize(events, tasks),
                                  "source_topic string, source_partition int, source_offset long, "
                                  "event_ts timestamp, value binary")
    frame.mapInArrow(scorer(settings), OUTPUT_SCHEMA).collect()
    took = time.monotonic() - t0
    log.info("warmed up in %.1fs", took)
    return took


def kafka_source(spark, settings: Settings) -> "DataFrame":
    """The request topic as a streaming DataFrame, read as the job reads it (also the benchmark's Spark floor)."""
    k, s = settings.kafka, settings.speed
    trigger = trigger_kwargs(s.stream_trigger)
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", k.bootstrap)
        .option("subscribe", ",".join(routes(settings)))
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "false")
        # A cached consumer's prefetch long-polls the broker for this long, and the next batch's fetch waits
        # behind it: Kafka's default (500 ms) was the largest single wait of a small batch.
        .option("kafka.fetch.max.wait.ms", str(s.stream_fetch_max_wait_ms))
    )
    if "realTime" not in trigger:  # real-time mode refuses a per-batch cap: its batches are bounded by time
        reader = reader.option("maxOffsetsPerTrigger", s.stream_max_offsets_per_trigger)
    source = reader.load()
    if s.stream_tasks and "realTime" not in trigger:  # one wave of tasks on few cores; real-time tasks never end
        source = source.coalesce(s.stream_tasks)
    return source


def kafka_sink(rows: "DataFrame", settings: Settings, name: str, checkpoint: str):
    """A started Kafka sink of ``rows`` (``topic``, ``key``, ``value``) with the job's trigger, delivery and
    progress-tracking options; returns the ``StreamingQuery``."""
    trigger = trigger_kwargs(settings.speed.stream_trigger)
    writer = (
        rows.writeStream.queryName(name).format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap)
        .option("kafka.acks", "all")
        .option("kafka.enable.idempotence", "true")
        .option("kafka.linger.ms", "5")
        .option("kafka.compression.type", "lz4")
        .option("checkpointLocation", checkpoint)
        .trigger(**trigger)
    )
    if "realTime" in trigger:
        writer = writer.outputMode("update")  # what real-time mode accepts; the same rows for a stateless query
    if "processingTime" in trigger:
        writer = writer.option("asyncProgressTrackingEnabled", "true").option(
            "asyncProgressTrackingCheckpointIntervalMs", str(settings.speed.stream_progress_interval_ms))
    return writer.start()


def start(spark, settings: Settings, checkpoint: str | None = None, status: StatusFile | None = None):
    """Start the query; returns the ``StreamingQuery``. Pass the ``status`` of an earlier start to restart
    (its listener is already registered).

    One Spark job per micro-batch does everything: read Kafka, then in the Python workers (``mapInArrow``) read
    each event, compute features, score and build the JSON, and write predictions and dead letters to Kafka
    (the sink picks each row's topic). Progress is tracked asynchronously, so offset and commit logs stay off the latency path.
    """
    # Arrow batches of one service call: the JVM prepares the next while Python waits on the service.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(settings.speed.stream_http_batch))
    rows = records(kafka_source(spark, settings), settings)
    if status is None:
        from core.spark import add_listener

        warm_up(spark, settings)
        status = StatusFile(settings)
        add_listener(spark, progress_listener(settings, status))
    query = kafka_sink(rows, settings, QUERY_NAME, checkpoint or settings.stream_checkpoint)
    status.write({"state": "started", "batches": 0})  # only once Spark accepted the query
    return query


# --------------------------------------------------------------------------------------------------- restarts
class Restarts:
    """When to restart a failed query, and which failures repeat (pure; ``supervise`` does the I/O).

    A failure is identified by where the failed batch started (the end offsets of the last batch that
    completed) and the first line of its error. The same failure on every replay is a batch that cannot
    pass: it is reported with its offsets, and the query is still restarted with a growing backoff, so a
    cause outside the batch (the service, Kafka) heals without an operator.
    """

    def __init__(self, backoff_s: float, max_restarts: int = 0, max_backoff_s: float = 60.0):
        self.backoff_s, self.max_restarts, self.max_backoff_s = backoff_s, max_restarts, max_backoff_s
        self.restarts = 0
        self.in_a_row = 0
        self.last: dict[str, Any] | None = None

    def failed(self, error: str, after_offsets: Any, batch_id: int | None) -> dict[str, Any]:
        """Record a failure; returns what the status file shows of it."""
        first_line = failure_signature(error)
        if after_offsets is None and self.last is not None:  # failed before completing a batch: the same replay
            after_offsets, batch_id = self.last["after_offsets"], self.last["batch_id"]
        same = self.last is not None and self.last["error"] == first_line and self.last["after_offsets"] == after_offsets
        self.in_a_row += 1
        self.last = {"error": first_line, "after_offsets": after_offsets, "batch_id": batch_id,
                     "repeats": (self.last["repeats"] + 1) if same and self.last else 1,
                     "at": dt.datetime.now(dt.UTC).isoformat()}
        return self.last

    def succeeded(self) -> None:
        """A batch completed after a restart: the backoff starts over."""
        self.in_a_row = 0

    def next_wait(self) -> float | None:
        """Seconds to wait before the next restart; None once ``max_restarts`` (when set) is spent."""
        if self.max_restarts and self.restarts >= self.max_restarts:
            return None
        self.restarts += 1
        return min(self.backoff_s * 2 ** max(self.in_a_row - 1, 0), self.max_backoff_s)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_EXCEPTION_LINE = re.compile(r"^\s*([\w.]+(Error|Exception)): (.+)$")


def failure_signature(error: str) -> str:
    """The line that says what went wrong, the same on every replay: the last ``SomeError: message`` line (the
    root cause Python or the JVM raised), else the first line; query and run ids blanked out."""
    lines = [line for line in (error or "").strip().splitlines() if line.strip()]
    if not lines:
        return "unknown error"
    causes = [line.strip() for line in lines if _EXCEPTION_LINE.match(line)]
    return _UUID.sub("…", causes[-1] if causes else lines[0])[:500]


def _last_offsets(query) -> tuple[Any, int | None]:
    """Where the failed batch started: the end offsets and id of the last batch the query completed."""
    progress = query.lastProgress
    if not progress:
        return None, None
    sources = progress.get("sources") or [{}]
    end = sources[0].get("endOffset")
    return (json.loads(end) if isinstance(end, str) else end), progress.get("batchId")


def supervise(spark, settings: Settings, status: StatusFile, starters: dict[str, Any]) -> None:
    """Run the named queries (``starters``: name -> function that starts it) until one is stopped on purpose;
    restart a failed one with backoff while the others keep running.

    The failure, where its batch started and how often it repeated go to the status file (``lambdaml speed
    status``), the log and the ``metrics`` topic (``stream.restarts``).
    """
    from pyspark.errors import StreamingQueryException

    s = settings.speed
    queries = {name: go() for name, go in starters.items()}
    restarts = {name: Restarts(s.stream_restart_backoff_s, s.stream_restart_max) for name in starters}
    while True:
        try:
            spark.streams.awaitAnyTermination()
        except StreamingQueryException:
            pass
        spark.streams.resetTerminated()
        for name, query in list(queries.items()):
            if query.isActive:
                continue
            exc = query.exception()
            if exc is None:
                return  # stopped on purpose
            wait = _record_failure(settings, status, name, query, restarts[name], str(exc))
            if wait is None:
                raise exc
            time.sleep(wait)
            queries[name] = starters[name]()


def _record_failure(settings: Settings, status: StatusFile, name: str, query, restarts: Restarts,
                    error: str) -> float | None:
    """Note a failed query everywhere an operator looks; returns the wait before its restart (None: give up)."""
    from core import kafka

    offsets, batch_id = _last_offsets(query)
    if query.lastProgress:  # this run of the query completed batches before it failed
        restarts.succeeded()
    failure = restarts.failed(error, offsets, None if batch_id is None else batch_id + 1)
    wait = restarts.next_wait()
    status.sticky.update(restarts=restarts.restarts, last_failure=failure)
    status.write({"state": "failed" if wait is None else "restarting", "batches": 0})
    log.error("%s query failed (%s in a row%s): %s", name, restarts.in_a_row,
              f"; the same batch after offsets {offsets} failed {failure['repeats']} times"
              if failure["repeats"] > 1 else "", failure["error"])
    producer = kafka.producer(settings)
    event = MetricEvent(source="speed.stream", name="stream.restarts", value=restarts.restarts,
                        tags={"query": name, "error": failure["error"][:200], "repeats": str(failure["repeats"])})
    producer.produce(settings.kafka.metrics_topic, key=b"speed.stream", value=event.model_dump_json().encode())
    producer.flush(5)
    return wait


def main() -> None:
    from core.settings import get_settings
    from core.spark import add_listener, build_session

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    spark = build_session(settings, "lambdaml-speed-stream", settings.speed.jvm_options)
    spark.sparkContext.setLogLevel("WARN")
    log.info("streaming %s via %s (trigger %s, checkpoint %s)",
             ", ".join(f"{t} -> {r.topics.predictions}" for t, r in routes(settings).items()), settings.speed.app_url,
             settings.speed.stream_trigger, settings.stream_checkpoint)
    warm_up(spark, settings)  # before the first start only: a restart finds the workers warm
    status = StatusFile(settings)
    add_listener(spark, progress_listener(settings, status))
    supervise(spark, settings, status, {QUERY_NAME: lambda: start(spark, settings, status=status)})


if __name__ == "__main__":
    main()

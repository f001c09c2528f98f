"""The streaming job: ``trips.requests`` -> validate -> features -> prediction service -> ``trips.predictions``.

Spark Structured Streaming reads the request topic. Each event is parsed as
a VARIANT and checked by named rules that mirror ``core.events.TripRequest``;
a failing event goes to ``trips.dlq`` with the rule, the raw payload and its
source topic/partition/offset, and the stream carries on. Valid events get
their features from the Spark form of ``core.features`` and are scored by the
prediction service from Spark's Python workers (``mapInArrow``), in calls of
``stream_http_batch`` trips (also the size of the Arrow batches Spark sends
them) over one kept-alive connection per worker. A micro-batch runs in
``stream_tasks`` tasks, one wave on the local master's cores. Spark
builds the output JSON and its Kafka sink writes predictions (keyed by
``trip_id``, with the model version) and dead letters in the same job. A
query listener turns each batch's progress and observed metrics into
``metrics`` events and the status file.

Delivery is at least once: offsets are committed only after the sink wrote a
batch, so a job killed mid-batch redoes it from the checkpoint (with
asynchronous progress tracking, the batches of up to one progress interval).
Redelivered predictions carry the same key, and keyed upserts downstream
absorb them. An unreachable service is retried with backoff (up to
``stream_retry_max_s``); after that the query fails without committing the
batch, and a restart resumes from the checkpoint.

Run it with ``lambdaml speed up`` (or ``python -m speed.stream``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from core.events import PICKUP_YEARS, REQUEST_LIMITS, MetricEvent
from core.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame

log = logging.getLogger("lambdaml.speed.stream")
QUERY_NAME = "speed_predictions"


# --------------------------------------------------------------------------------------------------- pure transforms
def _rules() -> list[tuple[str, "Column"]]:
    """(rule, condition that breaks it), in order, over the extracted columns; the first broken rule wins."""
    from pyspark.sql import functions as F

    def integer_in(col: str, lo: float, hi: float) -> "Column":
        x = F.col(col)
        return x.isNull() | (x != F.floor(x)) | (x < lo) | (x > hi)

    zone_lo, zone_hi = REQUEST_LIMITS["zone"]
    d_lo, d_hi = REQUEST_LIMITS["trip_distance"]
    p_lo, p_hi = REQUEST_LIMITS["passenger_count"]
    trip_id, ts = F.col("trip_id"), F.col("pickup_ts")
    return [
        ("not_a_json_object", ~F.coalesce(F.col("_shape").startswith("OBJECT"), F.lit(False))),
        ("trip_id: missing, not a string, or longer than 64",
         (F.coalesce(F.col("_trip_id_type"), F.lit("")) != "STRING") | (F.length(F.trim(trip_id)) == 0)
         | (F.length(trip_id) > REQUEST_LIMITS["trip_id_max_len"])),
        (f"pickup_ts: missing, not a timestamp, or outside {PICKUP_YEARS[0]}..{PICKUP_YEARS[1]}",
         ts.isNull() | ~F.year(ts).between(*PICKUP_YEARS)),
        (f"PULocationID: must be an integer in {zone_lo}..{zone_hi}", integer_in("PULocationID", zone_lo, zone_hi)),
        (f"DOLocationID: must be an integer in {zone_lo}..{zone_hi}", integer_in("DOLocationID", zone_lo, zone_hi)),
        (f"trip_distance: must be a number in {d_lo}..{d_hi}",
         F.col("trip_distance").isNull() | ~F.col("trip_distance").between(d_lo, d_hi)),
        (f"passenger_count: must be null or an integer in {p_lo}..{p_hi}",
         F.col("_passengers_given") & integer_in("passenger_count", p_lo, p_hi)),
    ]


SOURCE_COLUMNS = ("source_topic", "source_partition", "source_offset", "event_ts", "payload")
REQUEST_COLUMNS = ("trip_id", "pickup_ts", "PULocationID", "DOLocationID", "passenger_count", "trip_distance",
                   "VendorID")


def parse(kafka_rows: "DataFrame") -> "DataFrame":
    """Kafka rows to request columns plus ``error`` (null when valid) and the source coordinates.

    Three projections on purpose: the payload is parsed once, each field is extracted once, and the rules
    read columns. Written as one projection, every rule would inline its own parse of the payload, and
    planning that tree cost about a second per micro-batch.
    """
    from pyspark.sql import functions as F

    def get(field: str, typ: str) -> "Column":
        return F.try_variant_get(F.col("_v"), f"$.{field}", typ)

    parsed = kafka_rows.select(
        F.col("topic").alias("source_topic"), F.col("partition").alias("source_partition"),
        F.col("offset").alias("source_offset"), F.col("timestamp").alias("event_ts"),
        F.col("value").cast("string").alias("payload"),
    ).withColumn("_v", F.try_parse_json("payload"))
    fields = parsed.select(
        *SOURCE_COLUMNS,
        F.schema_of_variant("_v").alias("_shape"),
        get("trip_id", "string").alias("trip_id"),
        F.schema_of_variant(get("trip_id", "variant")).alias("_trip_id_type"),
        F.try_to_timestamp(get("pickup_ts", "string")).alias("pickup_ts"),
        get("PULocationID", "double").alias("PULocationID"),
        get("DOLocationID", "double").alias("DOLocationID"),
        get("passenger_count", "double").alias("passenger_count"),
        (get("passenger_count", "variant").isNotNull() & ~F.is_variant_null(get("passenger_count", "variant")))
        .alias("_passengers_given"),
        get("trip_distance", "double").alias("trip_distance"),
        get("VendorID", "double").alias("VendorID"),
    )
    error = F.lit(None).cast("string")
    for rule, broken in reversed(_rules()):
        error = F.when(F.coalesce(broken, F.lit(True)), F.lit(rule)).otherwise(error)
    return fields.select(*SOURCE_COLUMNS, *REQUEST_COLUMNS, error.alias("error"))


def batch_rows(parsed: "DataFrame", settings: Settings) -> "DataFrame":
    """Every event of a micro-batch with its features (Spark form of ``core.features``), and, for an invalid one,
    what its dead letter keeps of the payload.

    - An invalid row's inputs are nulled first, so that no value a rule refused (10**400, say) can fail a
      feature's cast and the batch; its features are never sent.
    - The raw ``payload`` is replaced, for invalid rows only, by its first ``dead_letter_payload_bytes``
      bytes made valid UTF-8, its byte length, sha256 and whether it was cut. Neither a huge payload nor
      invalid UTF-8 (which Arrow refuses) ever reaches the Python workers: the scorer needs neither.
    """
    from pyspark.sql import functions as F

    from core import features

    valid = F.col("error").isNull()
    inputs = parsed.select(*[F.when(valid, F.col(c)).alias(c) if c in REQUEST_COLUMNS else F.col(c)
                             for c in parsed.columns])
    n = settings.speed.dead_letter_payload_bytes
    raw = F.col("payload").cast("binary")  # the event's bytes, unchanged
    letter = {
        "payload": F.when(~valid, F.make_valid_utf8(F.substring(raw, 1, n).cast("string"))),
        "payload_bytes": F.when(~valid, F.octet_length(raw)),
        "payload_sha256": F.when(~valid, F.sha2(raw, 256)),
        "payload_truncated": F.when(~valid, F.coalesce(F.octet_length(raw) > n, F.lit(False))),
    }
    return features.with_features(inputs).select(*INPUTS, *features.FEATURE_NAMES, *SOURCE,
                                                  *[v.alias(k) for k, v in letter.items()])


INPUTS = ("trip_id", "event_ts", "pickup_ts", "PULocationID", "DOLocationID", "passenger_count", "trip_distance")
SOURCE = ("error", "source_topic", "source_partition", "source_offset")
SCORED_FIELDS = "predicted_duration_s double, model_version string, scored_ts timestamp, service_retries int"
JSON_OPTIONS = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX", "ignoreNullFields": "false"}
OBSERVED = "batch"


RECORD_TOO_LARGE = "record_too_large"


def outputs(scored: "DataFrame", settings: Settings) -> "DataFrame":
    """Scored rows to Kafka sink rows (``topic``, ``key``, ``value``): a valid event becomes its prediction on
    ``trips.predictions`` keyed by ``trip_id`` (``core.events.Prediction``); an invalid one its dead letter on
    ``trips.dlq`` keyed by source offset, carrying the broken rule and the raw payload. JSON built by Spark.

    No input can make a record the sink refuses, which would fail the batch on every replay:

    - a dead letter keeps the first ``dead_letter_payload_bytes`` bytes of the payload, made valid UTF-8,
      with the payload's byte length, its sha256 and whether it was cut; the whole payload stays in the request
      topic at the dead letter's source coordinates (and in the lake's master log);
    - any value still over ``stream_record_max_bytes`` is replaced by a small ``record_too_large`` dead letter.
    """
    from pyspark.sql import functions as F

    k, s = settings.kafka, settings.speed
    ok = F.col("error").isNull()
    value = F.to_json(F.struct(
        F.lit(1).alias("schema_version"), "trip_id", "model_version", "predicted_duration_s", "event_ts",
        "scored_ts", "pickup_ts", F.col("PULocationID").cast("int").alias("PULocationID"),
        F.col("DOLocationID").cast("int").alias("DOLocationID"),
        F.col("passenger_count").cast("int").alias("passenger_count"), "trip_distance"), JSON_OPTIONS)
    coordinates = ("source_topic", "source_partition", "source_offset")
    payload_fields = ("payload_bytes", "payload_sha256")

    def dead_letter(payload: "Column", error: "Column", truncated: "Column") -> "Column":
        return F.to_json(F.struct(
            F.lit(1).alias("schema_version"), payload.alias("payload"), error.alias("error"), *coordinates,
            *payload_fields, truncated.alias("payload_truncated"), F.current_timestamp().alias("ts")), JSON_OPTIONS)

    dead = dead_letter(F.col("payload"), F.col("error"), F.col("payload_truncated"))
    source_key = F.concat_ws("/", *coordinates)
    rows = scored.select(
        *coordinates, *payload_fields,
        F.when(ok, F.lit(k.trip_predictions_topic)).otherwise(F.lit(k.dead_letter_topic)).alias("topic"),
        F.when(ok, F.col("trip_id")).otherwise(source_key).alias("key"),
        F.when(ok, value).otherwise(dead).alias("value"),
    )
    too_large = F.octet_length("value") > s.stream_record_max_bytes
    refused = dead_letter(F.lit(None).cast("string"), F.format_string(
        f"{RECORD_TOO_LARGE}: the record for %s was %d bytes, over stream_record_max_bytes "
        f"({s.stream_record_max_bytes}); the payload is at its source coordinates", F.col("topic"),
        F.octet_length("value")), F.lit(True))
    return rows.select(
        F.when(too_large, F.lit(k.dead_letter_topic)).otherwise(F.col("topic")).alias("topic"),
        F.when(too_large, source_key).otherwise(F.col("key")).alias("key"),
        F.when(too_large, refused).otherwise(F.col("value")).alias("value"),
    )


def observed(scored: "DataFrame") -> "DataFrame":
    """Per-batch metrics computed by the same job (``observe``), read back from the query's progress."""
    from pyspark.sql import functions as F

    ok = F.col("error").isNull()
    latency_ms = F.when(ok, (F.unix_micros("scored_ts") - F.unix_micros("event_ts")) / 1000.0)
    return scored.observe(
        OBSERVED,
        F.count(F.lit(1)).alias("events"),
        F.coalesce(F.sum(ok.cast("int")), F.lit(0)).alias("rows"),
        F.coalesce(F.sum((~ok).cast("int")), F.lit(0)).alias("dead_letters"),
        F.percentile_approx(latency_ms, 0.5).alias("latency_ms_p50"),
        F.max(latency_ms).alias("latency_ms_max"),
        F.coalesce(F.max("service_retries"), F.lit(0)).alias("service_retries"),
        F.collect_set("model_version").alias("model_versions"),
    )


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
        self.url = f"{settings.speed.app_url}/v1/predict/features"  # gunicorn itself: this client sheds its own load
        self.calls = 0
        self.retries = 0

    def _post(self, body: bytes) -> dict[str, Any]:
        import requests

        try:
            resp = self.session.post(self.url, data=body, headers={"Content-Type": "application/json"},
                                     timeout=self.settings.speed.request_timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ServiceUnavailable(f"{self.url}: {exc.__class__.__name__}") from exc
        if resp.status_code in (502, 503, 504):
            raise ServiceUnavailable(f"{self.url}: HTTP {resp.status_code} {resp.text[:200]}")
        if resp.status_code != 200:
            raise RuntimeError(f"{self.url} refused a batch: HTTP {resp.status_code} {resp.text[:300]}")
        self.calls += 1
        return resp.json()

    def score(self, trip_ids: list[str], columns: dict[str, list]) -> dict[str, Any]:
        from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

        body = json.dumps({"trip_ids": trip_ids, "features": columns}, separators=(",", ":")).encode()
        for attempt in Retrying(stop=stop_after_delay(self.settings.speed.stream_retry_max_s),
                                wait=wait_exponential_jitter(initial=0.2, max=10.0),
                                retry=retry_if_exception_type(ServiceUnavailable), reraise=True,
                                before_sleep=self._note_retry):
            with attempt:
                return self._post(body)
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


def score_batch(client: PredictionClient, batch: "pa.RecordBatch", chunk: int) -> "pa.RecordBatch":
    """Append the service's prediction, model version, scoring time and retry count to each valid row of an
    Arrow batch (``batch_rows`` columns); invalid rows get nulls. Calls carry up to ``chunk`` trips each."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from core import features

    n = batch.num_rows
    predicted: list[float | None] = [None] * n
    versions: list[str | None] = [None] * n
    scored: list[dt.datetime | None] = [None] * n
    retries: list[int | None] = [None] * n
    valid = pc.is_null(batch.column("error")).to_numpy(zero_copy_only=False).nonzero()[0]
    for start in range(0, len(valid), chunk):
        idx = valid[start:start + chunk]
        part = batch.take(pa.array(idx))
        before = client.retries
        reply = client.score(part.column("trip_id").to_pylist(),
                             {f: part.column(f).to_pylist() for f in features.FEATURE_NAMES})
        now = dt.datetime.now(dt.UTC)
        for i, p in zip(idx, reply["predictions"]):
            predicted[i], versions[i], scored[i], retries[i] = (p["predicted_duration_s"], reply["model_version"],
                                                                now, client.retries - before)
    columns = {"predicted_duration_s": pa.array(predicted, pa.float64()),
               "model_version": pa.array(versions, pa.string()),
               "scored_ts": pa.array(scored, pa.timestamp("us", tz="UTC")),
               "service_retries": pa.array(retries, pa.int32())}
    out = batch
    for name, array in columns.items():
        out = out.append_column(name, array)
    return out


def scorer(settings: Settings):
    """The ``mapInArrow`` function: runs in Spark's Python workers, one service call per ``stream_http_batch``."""
    chunk = settings.speed.stream_http_batch

    def run(batches):
        client = _client(settings)
        for batch in batches:
            yield score_batch(client, batch, chunk)

    return run


def scored_schema(rows: "DataFrame") -> str:
    return ", ".join([f"`{f.name}` {f.dataType.simpleString()}" for f in rows.schema.fields] + [SCORED_FIELDS])


class StatusFile:
    """``<runtime>/speed/stream-status.json``: what ``lambdaml speed status`` and the tests read."""

    def __init__(self, settings: Settings):
        self.path = settings.runtime_dir / "speed" / "stream-status.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sticky: dict[str, Any] = {}  # kept in every write: the restarts and the last failure

    def write(self, status: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.sticky | status | {"ts": dt.datetime.now(dt.UTC).isoformat()}, default=str))
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
    """A ``StreamingQueryListener`` that turns each batch's progress into metrics, the status file and a log
    line. It runs on the driver, after the batch; the rows themselves never pass through it."""
    from pyspark.sql.streaming import StreamingQueryListener

    from core import kafka

    class ProgressListener(StreamingQueryListener):
        def __init__(self) -> None:
            self.producer = kafka.producer(settings, **{"linger.ms": 5})
            self.batches = 0
            self.retries = 0

        def onQueryStarted(self, event) -> None:
            status.write({"state": "started", "batches": 0, "query_id": str(event.id)})

        def onQueryProgress(self, event) -> None:
            summary = batch_summary(json.loads(event.progress.json))
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
            log.info("batch %d: %d predicted, %d dead-lettered in %.2fs, p50 %s ms %s", summary["batch_id"],
                     summary["rows"], summary["dead_letters"], summary["seconds"], summary.get("latency_ms_p50"),
                     summary["model_versions"])

        def onQueryIdle(self, event) -> None:
            pass

        def onQueryTerminated(self, event) -> None:
            self.producer.flush(10)
            status.write({"state": "failed" if event.exception else "stopped", "batches": self.batches,
                          "error": (event.exception or "")[:2000]})

    return ProgressListener()


def kafka_source(spark, settings: Settings) -> "DataFrame":
    """The request topic as a streaming DataFrame, read as the job reads it (also the benchmark's Spark floor)."""
    k, s = settings.kafka, settings.speed
    trigger = trigger_kwargs(s.stream_trigger)
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", k.bootstrap)
        .option("subscribe", k.trip_requests_topic)
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

    One Spark job per micro-batch does everything: read Kafka, parse, compute features, score in the Python
    workers (``mapInArrow``), build the JSON and write predictions and dead letters to Kafka (the sink picks
    each row's topic). Progress is tracked asynchronously, so offset and commit logs stay off the latency path.
    """
    # Arrow batches of one service call: the JVM prepares the next while Python waits on the service.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(settings.speed.stream_http_batch))
    rows = batch_rows(parse(kafka_source(spark, settings)), settings)
    scored = observed(rows.mapInArrow(scorer(settings), scored_schema(rows)))
    if status is None:
        status = StatusFile(settings)
        spark.streams.addListener(progress_listener(settings, status))
    query = kafka_sink(outputs(scored, settings), settings, QUERY_NAME, checkpoint or settings.stream_checkpoint)
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
        first_line = (error or "").strip().splitlines()[0][:500] if (error or "").strip() else "unknown error"
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


def _last_offsets(query) -> tuple[Any, int | None]:
    """Where the failed batch started: the end offsets and id of the last batch the query completed."""
    progress = query.lastProgress
    if not progress:
        return None, None
    sources = progress.get("sources") or [{}]
    end = sources[0].get("endOffset")
    return (json.loads(end) if isinstance(end, str) else end), progress.get("batchId")


def supervise(spark, settings: Settings) -> None:
    """Run the query until it is stopped; restart it with backoff when it fails.

    The failure, where its batch started and how often it repeated go to the status file (``lambdaml speed
    status``), the log and the ``metrics`` topic (``stream.restarts``).
    """
    from pyspark.errors import StreamingQueryException

    from core import kafka

    s = settings.speed
    restarts = Restarts(s.stream_restart_backoff_s, s.stream_restart_max)
    status = StatusFile(settings)
    spark.streams.addListener(progress_listener(settings, status))
    query = start(spark, settings, status=status)
    while True:
        try:
            query.awaitTermination()
            return  # stopped on purpose
        except StreamingQueryException as exc:
            offsets, batch_id = _last_offsets(query)
            if query.lastProgress:  # this run of the query completed batches before it failed
                restarts.succeeded()
            failure = restarts.failed(str(exc.getErrorClass() or "") + ": " + str(exc), offsets,
                                      None if batch_id is None else batch_id + 1)
            wait = restarts.next_wait()
            status.sticky = {"restarts": restarts.restarts, "last_failure": failure}
            status.write({"state": "failed" if wait is None else "restarting", "batches": 0})
            log.error("streaming query failed (%s in a row%s): %s", restarts.in_a_row,
                      f"; the same batch after offsets {offsets} failed {failure['repeats']} times"
                      if failure["repeats"] > 1 else "", failure["error"])
            producer = kafka.producer(settings)
            event = MetricEvent(source="speed.stream", name="stream.restarts", value=restarts.restarts,
                                tags={"error": failure["error"][:200], "repeats": str(failure["repeats"])})
            producer.produce(settings.kafka.metrics_topic, key=b"speed.stream", value=event.model_dump_json().encode())
            producer.flush(5)
            if wait is None:
                raise
            time.sleep(wait)
            query = start(spark, settings, status=status)


def main() -> None:
    from core.settings import get_settings
    from core.spark import build_session

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    spark = build_session(settings, "lambdaml-speed-stream")
    spark.sparkContext.setLogLevel("WARN")
    log.info("streaming %s -> %s via %s (trigger %s, checkpoint %s)", settings.kafka.trip_requests_topic,
             settings.kafka.trip_predictions_topic, settings.speed.app_url, settings.speed.stream_trigger,
             settings.stream_checkpoint)
    supervise(spark, settings)


if __name__ == "__main__":
    main()

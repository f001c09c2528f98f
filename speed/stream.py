"""The streaming job: ``trips.requests`` -> validate -> features -> prediction service -> ``trips.predictions``.

Spark Structured Streaming reads the request topic. Each event is parsed as
a VARIANT and checked by named rules that mirror ``core.events.TripRequest``;
a failing event goes to ``trips.dlq`` with the rule, the raw payload and its
source topic/partition/offset, and the stream carries on. Valid events get
their features from the Spark form of ``core.features``; each micro-batch
is scored by the prediction service in batches over one kept-alive HTTP
connection, and the predictions (keyed by ``trip_id``, with the model
version) and the batch's run-time metrics are produced to Kafka.

Delivery is at least once: a batch counts as done only after its outputs are
flushed, so a job killed mid-batch redoes that batch from the checkpoint.
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


def batch_rows(parsed: "DataFrame") -> "DataFrame":
    """Every event of a micro-batch with its features (Spark form of ``core.features``), so one Spark action
    per batch brings back both what is scored and what is dead-lettered (features of invalid rows are unused)."""
    from core import features

    return features.with_features(parsed).select(*INPUTS, *features.FEATURE_NAMES, *SOURCE)


INPUTS = ("trip_id", "event_ts", "pickup_ts", "PULocationID", "DOLocationID", "passenger_count", "trip_distance")
SOURCE = ("error", "payload", "source_topic", "source_partition", "source_offset")


def dead_letter(row: dict[str, Any], now: dt.datetime) -> tuple[str, dict[str, Any]]:
    """Key and value for ``trips.dlq``: keyed by source offset, carrying the raw payload and the broken rule."""
    key = f"{row['source_topic']}/{row['source_partition']}/{row['source_offset']}"
    return key, {"schema_version": 1, "payload": row["payload"], "error": row["error"],
                 "source_topic": row["source_topic"], "source_partition": row["source_partition"],
                 "source_offset": row["source_offset"], "ts": now.isoformat()}


def prediction(row: dict[str, Any], predicted_s: float, version: str, scored: dt.datetime) -> dict[str, Any]:
    """The ``trips.predictions`` value (``core.events.Prediction``) for one scored event."""
    pax = row["passenger_count"]
    return {"schema_version": 1, "trip_id": row["trip_id"], "model_version": version,
            "predicted_duration_s": predicted_s, "event_ts": _utc(row["event_ts"]).isoformat(),
            "scored_ts": scored.isoformat(), "pickup_ts": _utc(row["pickup_ts"]).isoformat(),
            "PULocationID": int(row["PULocationID"]), "DOLocationID": int(row["DOLocationID"]),
            "passenger_count": None if pax is None else int(pax), "trip_distance": row["trip_distance"]}


def _utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts


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
        self.url = f"{settings.speed.url}/v1/predict/features"
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


class PredictionSink:
    """``foreachBatch`` body: dead letters, scoring, predictions and metrics for one micro-batch."""

    def __init__(self, settings: Settings):
        from core import kafka

        self.settings = settings
        self.client = PredictionClient(settings)
        self.producer = kafka.producer(settings, **{"linger.ms": 5})
        self.status_file = settings.runtime_dir / "speed" / "stream-status.json"
        self.status_file.parent.mkdir(parents=True, exist_ok=True)
        self.batches = 0

    def write_status(self, status: dict[str, Any]) -> None:
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(status | {"ts": dt.datetime.now(dt.UTC).isoformat()}, default=str))
        tmp.replace(self.status_file)

    def __call__(self, batch: "DataFrame", batch_id: int) -> None:
        import pyarrow.compute as pc

        from core import features, kafka

        k = self.settings.kafka
        t0 = time.perf_counter()
        table = batch_rows(batch).toArrow()  # the batch's only Spark job
        t_spark = time.perf_counter() - t0
        bad = pc.is_valid(table.column("error"))
        now = dt.datetime.now(dt.UTC)
        dead = table.filter(bad).select(list(SOURCE)).to_pylist()
        for row in dead:
            key, value = dead_letter(row, now)
            self._produce(k.dead_letter_topic, key, kafka.encode(value))
        n_dlq = len(dead)
        table = table.filter(pc.invert(bad))
        n = table.num_rows
        versions: dict[str, int] = {}
        lat_ms: list[float] = []
        t_score = 0.0
        chunk = self.settings.speed.stream_http_batch
        for start in range(0, n, chunk):
            part = table.slice(start, chunk)
            ids = part.column("trip_id").to_pylist()
            t1 = time.perf_counter()
            reply = self.client.score(ids, {f: part.column(f).to_pylist() for f in features.FEATURE_NAMES})
            t_score += time.perf_counter() - t1
            version = reply["model_version"]
            versions[version] = versions.get(version, 0) + len(ids)
            scored = dt.datetime.now(dt.UTC)
            for p, row in zip(reply["predictions"], part.select(list(INPUTS)).to_pylist()):
                lat_ms.append((scored - _utc(row["event_ts"])).total_seconds() * 1000)
                self._produce(k.trip_predictions_topic, p["trip_id"],
                              kafka.encode(prediction(row, p["predicted_duration_s"], version, scored)))
        took = time.perf_counter() - t0
        summary = {"batch_id": batch_id, "rows": n, "dead_letters": n_dlq, "seconds": round(took, 3),
                   "spark_seconds": round(t_spark, 3), "scoring_seconds": round(t_score, 3),
                   "service_calls": self.client.calls, "service_retries": self.client.retries,
                   "model_versions": versions}
        if lat_ms:
            lat_ms.sort()
            summary["latency_ms_p50"] = round(lat_ms[len(lat_ms) // 2], 1)
            summary["latency_ms_max"] = round(lat_ms[-1], 1)
        for name in ("rows", "dead_letters", "seconds", "latency_ms_p50"):
            if name in summary:
                metric = MetricEvent(source="speed.stream", name=f"stream.{name}", value=summary[name],
                                     tags={"batch_id": str(batch_id)})
                self._produce(k.metrics_topic, metric.source, metric.model_dump_json().encode())
        if self.producer.flush(60) != 0:
            raise RuntimeError("could not deliver predictions to Kafka; the batch will be redone")
        self.batches += 1
        self.write_status({"state": "running", "batches": self.batches, "last": summary})
        if n or n_dlq:
            log.info("batch %d: %d predicted, %d dead-lettered in %.2fs (Spark %.2fs, service %.2fs) %s", batch_id,
                     n, n_dlq, took, t_spark, t_score, versions)

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key.encode(), value=value)
                return
            except BufferError:
                self.producer.poll(0.1)


def start(spark, settings: Settings, checkpoint: str | None = None):
    """Start the query; returns the ``StreamingQuery``."""
    k, s = settings.kafka, settings.speed
    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", k.bootstrap)
        .option("subscribe", k.trip_requests_topic)
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "false")
        .option("maxOffsetsPerTrigger", s.stream_max_offsets_per_trigger)
        .load()
    )
    sink = PredictionSink(settings)
    query = (
        parse(source).writeStream.queryName(QUERY_NAME)
        .foreachBatch(sink)
        .option("checkpointLocation", checkpoint or settings.stream_checkpoint)
        .trigger(**trigger_kwargs(s.stream_trigger))
        .start()
    )
    sink.write_status({"state": "started", "batches": 0})  # only once Spark accepted the query
    return query


def main() -> None:
    from core.settings import get_settings
    from core.spark import build_session

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    spark = build_session(settings, "lambdaml-speed-stream")
    spark.sparkContext.setLogLevel("WARN")
    query = start(spark, settings)
    log.info("streaming %s -> %s via %s (trigger %s, checkpoint %s)", settings.kafka.trip_requests_topic,
             settings.kafka.trip_predictions_topic, settings.speed.url, settings.speed.stream_trigger,
             settings.stream_checkpoint)
    last_batch = -1
    while not query.awaitTermination(30):
        progress = query.lastProgress
        if progress and progress["batchId"] != last_batch:
            last_batch = progress["batchId"]
            log.info("progress: batch %d, %.0f rows/s in, durations ms %s", last_batch,
                     progress.get("inputRowsPerSecond") or 0.0, json.dumps(progress.get("durationMs", {})))


if __name__ == "__main__":
    main()

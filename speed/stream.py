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

from core.events import PICKUP_YEARS, REQUEST_LIMITS, Prediction
from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

log = logging.getLogger("lambdaml.speed.stream")
QUERY_NAME = "speed_predictions"


# --------------------------------------------------------------------------------------------------- pure transforms
def _rules(v: "Column") -> list[tuple[str, "Column"]]:
    """(rule, condition that breaks it), in order; the first broken rule is the event's error."""
    from pyspark.sql import functions as F

    def num(field: str) -> "Column":
        return F.try_variant_get(v, f"$.{field}", "double")

    def integer_in(field: str, lo: float, hi: float) -> "Column":
        x = num(field)
        return x.isNull() | (x != F.floor(x)) | (x < lo) | (x > hi)

    trip_id = F.try_variant_get(v, "$.trip_id", "string")
    trip_id_type = F.schema_of_variant(F.try_variant_get(v, "$.trip_id", "variant"))
    ts = pickup_ts(v)
    zone_lo, zone_hi = REQUEST_LIMITS["zone"]
    d_lo, d_hi = REQUEST_LIMITS["trip_distance"]
    p_lo, p_hi = REQUEST_LIMITS["passenger_count"]
    passengers = F.try_variant_get(v, "$.passenger_count", "variant")
    passengers_given = passengers.isNotNull() & ~F.is_variant_null(passengers)
    return [
        ("not_a_json_object", v.isNull() | ~F.schema_of_variant(v).startswith("OBJECT")),
        ("trip_id: missing, not a string, or longer than 64",
         (F.coalesce(trip_id_type, F.lit("")) != "STRING") | (F.length(F.trim(trip_id)) == 0)
         | (F.length(trip_id) > REQUEST_LIMITS["trip_id_max_len"])),
        (f"pickup_ts: missing, not a timestamp, or outside {PICKUP_YEARS[0]}..{PICKUP_YEARS[1]}",
         ts.isNull() | ~F.year(ts).between(*PICKUP_YEARS)),
        (f"PULocationID: must be an integer in {zone_lo}..{zone_hi}", integer_in("PULocationID", zone_lo, zone_hi)),
        (f"DOLocationID: must be an integer in {zone_lo}..{zone_hi}", integer_in("DOLocationID", zone_lo, zone_hi)),
        (f"trip_distance: must be a number in {d_lo}..{d_hi}",
         num("trip_distance").isNull() | ~num("trip_distance").between(d_lo, d_hi)),
        (f"passenger_count: must be null or an integer in {p_lo}..{p_hi}",
         passengers_given & integer_in("passenger_count", p_lo, p_hi)),
    ]


def pickup_ts(v: "Column") -> "Column":
    from pyspark.sql import functions as F

    return F.try_to_timestamp(F.try_variant_get(v, "$.pickup_ts", "string"))


def parse(kafka_rows: "DataFrame") -> "DataFrame":
    """Kafka rows to request columns plus ``error`` (null when valid) and the source coordinates."""
    from pyspark.sql import functions as F

    payload = F.col("value").cast("string")
    v = F.try_parse_json(payload)
    error = F.lit(None).cast("string")
    for rule, broken in reversed(_rules(v)):
        error = F.when(F.coalesce(broken, F.lit(True)), F.lit(rule)).otherwise(error)
    return kafka_rows.select(
        F.col("topic").alias("source_topic"), F.col("partition").alias("source_partition"),
        F.col("offset").alias("source_offset"), F.col("timestamp").alias("event_ts"),
        payload.alias("payload"),
        F.try_variant_get(v, "$.trip_id", "string").alias("trip_id"),
        pickup_ts(v).alias("pickup_ts"),
        F.try_variant_get(v, "$.PULocationID", "double").alias("PULocationID"),
        F.try_variant_get(v, "$.DOLocationID", "double").alias("DOLocationID"),
        F.try_variant_get(v, "$.passenger_count", "double").alias("passenger_count"),
        F.try_variant_get(v, "$.trip_distance", "double").alias("trip_distance"),
        F.try_variant_get(v, "$.VendorID", "double").alias("VendorID"),
        error.alias("error"),
    )


def dead_letters(parsed: "DataFrame") -> "DataFrame":
    """Key/value rows for ``trips.dlq``: keyed by source offset, carrying the raw payload and the rule."""
    from pyspark.sql import functions as F

    bad = parsed.where(F.col("error").isNotNull())
    key = F.concat_ws("/", "source_topic", "source_partition", "source_offset")
    value = F.to_json(F.struct(
        F.lit(1).alias("schema_version"), F.col("payload"), F.col("error"), F.col("source_topic"),
        F.col("source_partition"), F.col("source_offset"), F.current_timestamp().alias("ts")))
    return bad.select(key.alias("key"), value.alias("value"))


def scoring_rows(parsed: "DataFrame") -> "DataFrame":
    """The valid events with their features (Spark form of ``core.features``)."""
    from pyspark.sql import functions as F

    from core import features

    valid = parsed.where(F.col("error").isNull())
    return features.with_features(valid).select(*INPUTS, *features.FEATURE_NAMES)


INPUTS = ("trip_id", "event_ts", "pickup_ts", "PULocationID", "DOLocationID", "passenger_count", "trip_distance")


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
        self.write_status({"state": "started", "batches": 0})
        self.batches = 0

    def write_status(self, status: dict[str, Any]) -> None:
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(status | {"ts": dt.datetime.now(dt.UTC).isoformat()}, default=str))
        tmp.replace(self.status_file)

    def __call__(self, batch: "DataFrame", batch_id: int) -> None:
        from core import features, kafka

        k = self.settings.kafka
        t0 = time.perf_counter()
        batch.persist()
        try:
            dlq = dead_letters(batch)
            n_dlq = dlq.count()
            if n_dlq:
                dlq.write.format("kafka").option("kafka.bootstrap.servers", k.bootstrap) \
                    .option("topic", k.dead_letter_topic).save()
            table = scoring_rows(batch).toArrow()
        finally:
            batch.unpersist()
        n = table.num_rows
        versions: dict[str, int] = {}
        lat_ms: list[float] = []
        chunk = self.settings.speed.stream_http_batch
        for start in range(0, n, chunk):
            part = table.slice(start, chunk)
            ids = part.column("trip_id").to_pylist()
            reply = self.client.score(ids, {f: part.column(f).to_pylist() for f in features.FEATURE_NAMES})
            version = reply["model_version"]
            versions[version] = versions.get(version, 0) + len(ids)
            scored = dt.datetime.now(dt.UTC)
            inputs = part.select(list(INPUTS)).to_pylist()
            for p, row in zip(reply["predictions"], inputs):
                ev = _utc(row["event_ts"])
                out = Prediction(trip_id=p["trip_id"], model_version=version,
                                 predicted_duration_s=p["predicted_duration_s"], event_ts=ev, scored_ts=scored,
                                 pickup_ts=_utc(row["pickup_ts"]), PULocationID=int(row["PULocationID"]),
                                 DOLocationID=int(row["DOLocationID"]),
                                 passenger_count=None if row["passenger_count"] is None else int(row["passenger_count"]),
                                 trip_distance=row["trip_distance"])
                lat_ms.append((scored - ev).total_seconds() * 1000)
                self._produce(k.trip_predictions_topic, p["trip_id"], out.model_dump_json().encode())
        took = time.perf_counter() - t0
        summary = {"batch_id": batch_id, "rows": n, "dead_letters": n_dlq, "seconds": round(took, 3),
                   "service_calls": self.client.calls, "service_retries": self.client.retries,
                   "model_versions": versions}
        if lat_ms:
            lat_ms.sort()
            summary["latency_ms_p50"] = round(lat_ms[len(lat_ms) // 2], 1)
            summary["latency_ms_max"] = round(lat_ms[-1], 1)
        for name in ("rows", "dead_letters", "seconds", "latency_ms_p50"):
            if name in summary:
                metric = {"schema_version": 1, "source": "speed.stream", "name": f"stream.{name}",
                          "value": summary[name], "tags": {"batch_id": str(batch_id)},
                          "ts": dt.datetime.now(dt.UTC).isoformat()}
                self._produce(k.metrics_topic, "speed.stream", kafka.encode(metric))
        if self.producer.flush(60) != 0:
            raise RuntimeError("could not deliver predictions to Kafka; the batch will be redone")
        self.batches += 1
        self.write_status({"state": "running", "batches": self.batches, "last": summary})
        if n or n_dlq:
            log.info("batch %d: %d predicted, %d dead-lettered in %.2fs %s", batch_id, n, n_dlq, took, versions)

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key.encode(), value=value)
                return
            except BufferError:
                self.producer.poll(0.1)


def _utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts


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
    return (
        parse(source).writeStream.queryName(QUERY_NAME)
        .foreachBatch(PredictionSink(settings))
        .option("checkpointLocation", checkpoint or settings.stream_checkpoint)
        .trigger(**trigger_kwargs(s.stream_trigger))
        .start()
    )


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
    query.awaitTermination()


if __name__ == "__main__":
    main()

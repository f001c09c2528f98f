"""Events per second into the master log: the lake sink against a plain consumer writing Parquet.

The lake sink (``speed/lake_sink.py``) copies every event topic into the lake as Parquet, exactly once, with
Spark Structured Streaming's Kafka source and file sink. Its cost is a JVM and Spark's planning and commit
protocol per micro-batch; what that buys is the exactly-once file log. This benchmark measures what the sink
pays in throughput for it against the simplest program that lands the same records in the same form.

Both lines read the same ``--events`` trip requests (``core.events.TripRequest`` bodies, serialized and produced
before any clock starts) from a private set of topics (``bench.<id>.*``, created like the platform's), one after
the other, never at the same time (two cores):

- ``lake sink``: ``speed.lake_sink.start`` itself, in a session on the sink's own master
  (``speed.lake_sink_master``, ``local[1]``), over every private topic, into a private master path
  (``s3a://<bucket>/bench/lake_sink/<id>``) with a private checkpoint, under the ``availableNow`` trigger (every
  record there at the start, in batches of at most ``lake_sink_max_offsets_per_trigger``, then it stops). Timed
  from ``start`` to the end of ``awaitTermination``; building the session (the JVM start) is timed apart and not
  counted. Without ``lake_sink_nice``: nothing else runs beside it here. Its JVM gets the sink's options
  (``speed.jvm_options``, recorded); ``LAMBDAML_SPEED__JVM_OPTIONS=`` gives it the JVM's own compilers.
- ``plain consumer``: a confluent-kafka consumer (own group id; every partition of the same topics assigned from
  the beginning; commits nothing) that ``consume``-s up to ``CONSUME_BATCH`` records at a time, builds a pyarrow
  table of the sink's columns (``topic, partition, offset, timestamp, key, value, date``, date = the UTC day of
  the Kafka timestamp) every ``--batch-rows`` records and writes it with ``pyarrow.parquet`` (snappy, as Spark)
  to another private S3 path, one file per topic and day under ``topic=<t>/date=<d>/`` (Hive layout, as the
  sink). Timed from the first ``consume`` to the last file written.

After each line its output must hold exactly ``--events`` rows of the requests topic, each (partition, offset)
once, and nothing else; otherwise the benchmark fails rather than report a number. events/s = events / seconds.

The scoring stream's p50/p99 at 200/s with and without the lake sink beside it is not measured here: that is
``bench/stream.py`` (``--lake-sink-ab``).

Run: ``python -m bench.lake_sink`` (the local stack's Kafka and S3 must be up). Writes
bench/results/lake_sink.json. Removes its topics, both S3 paths and its checkpoint at the end, also on failure.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import common
from core import kafka, lake
from core.settings import Settings, get_settings

NAME = "lake_sink"
TRIGGER = "availableNow"
CONSUME_BATCH = 10_000  # records per consume() call of the plain consumer
CONSUME_TIMEOUT_S = 1.0
PRODUCER_CONFIG = {"linger.ms": 50, "batch.size": 1_048_576, "batch.num.messages": 10_000,
                   "queue.buffering.max.messages": 1_000_000}
MS_PER_DAY = 86_400_000
FIRST_PICKUP = dt.datetime(2026, 1, 5, 7)


# --------------------------------------------------------------------------------------------------- setup
def private_settings(base: Settings, unique: str, checkpoint: str) -> Settings:
    """Private topics, master path and checkpoint; the sink's own master and the availableNow trigger."""
    speed = base.speed.model_copy(update={"lake_sink_path": base.s3.uri("bench", "lake_sink", unique),
                                          "lake_sink_checkpoint": checkpoint, "lake_sink_trigger": TRIGGER})
    spark = base.spark.model_copy(update={"master": base.speed.lake_sink_master})
    return base.model_copy(update={"kafka": base.kafka.prefixed(f"bench.{unique}."), "speed": speed, "spark": spark})


def request_messages(prefix: str, n: int) -> list[tuple[bytes, bytes]]:
    """``n`` valid trip requests (key = trip id), serialized once, as ``tests/integration/test_speed_layer`` builds
    them."""
    from core.events import TripRequest

    out = []
    for i in range(n):
        trip = TripRequest(trip_id=f"{prefix}-{i:07d}", pickup_ts=FIRST_PICKUP + dt.timedelta(seconds=i),
                           PULocationID=1 + i % 263, DOLocationID=1 + (i * 7) % 263, passenger_count=1 + i % 4,
                           trip_distance=0.5 + (i % 40) / 4)
        out.append((trip.trip_id.encode(), trip.model_dump_json().encode()))
    return out


def produce(settings: Settings, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Send ``messages`` to ``topic`` (idempotent, acks=all, batched); seconds. Fails unless every one landed."""
    producer = kafka.producer(settings, **PRODUCER_CONFIG)
    failed = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal failed
        if err is not None:
            failed += 1

    t0 = time.perf_counter()
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
    remaining = producer.flush(120)
    if remaining or failed:
        raise RuntimeError(f"producing to {topic}: {remaining} message(s) still queued, {failed} failed")
    return time.perf_counter() - t0


def high_watermarks(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Records in each topic: the sum of its partitions' high watermarks (the topics are new: they start at 0)."""
    from confluent_kafka import TopicPartition

    consumer = kafka.consumer(settings, f"bench-lake-sink-watermarks-{uuid.uuid4().hex[:8]}")
    try:
        metadata = consumer.list_topics(timeout=10).topics
        return {t: sum(consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                       for p in metadata[t].partitions) for t in topics}
    finally:
        consumer.close()


def remove(settings: Settings, topics: list[str], uris: list[str], checkpoint: str) -> None:
    """Delete the private topics, S3 paths and checkpoint; each step is tried even if one before it failed."""
    from core.s3 import delete_prefix

    errors = []
    try:
        admin = kafka.admin_client(settings)  # kept referenced until every future has resolved
        for future in admin.delete_topics(topics).values():
            future.result()
    except Exception as exc:  # noqa: BLE001 - go on removing the rest, then report
        errors.append(f"topics: {exc}")
    for uri in uris:
        try:
            delete_prefix(settings, uri)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{uri}: {exc}")
    shutil.rmtree(checkpoint, ignore_errors=True)
    if errors:
        typer.echo(f"cleanup left something behind: {'; '.join(errors)}")
    else:
        typer.echo(f"removed the private topics ({len(topics)}), {', '.join(uris)} and {checkpoint}")


# --------------------------------------------------------------------------------------------------- the lake sink
def _progress(p: Any) -> dict[str, Any]:
    """One ``recentProgress`` entry as a dict (a dict before Spark 4, a ``StreamingQueryProgress`` since)."""
    raw = json.loads(p.json) if isinstance(getattr(p, "json", None), str) else dict(p)
    durations = raw.get("durationMs") or {}
    return {"batch_id": raw.get("batchId"), "rows": raw.get("numInputRows"),
            "trigger_execution_ms": durations.get("triggerExecution"), "add_batch_ms": durations.get("addBatch"),
            "query_planning_ms": durations.get("queryPlanning"), "wal_commit_ms": durations.get("walCommit")}


def run_sink(spark: Any, settings: Settings, checkpoint: str, timeout: float) -> dict[str, Any]:
    """``speed.lake_sink.start`` under availableNow, to its end: seconds and its batches."""
    from speed import lake_sink

    t0 = time.perf_counter()
    query = lake_sink.start(spark, settings, checkpoint)
    finished = query.awaitTermination(timeout)
    seconds = time.perf_counter() - t0
    if not finished:
        query.stop()
        raise RuntimeError(f"the lake sink had not finished after {timeout:.0f}s")
    if query.exception() is not None:
        raise RuntimeError(f"the lake sink query failed: {query.exception()}")
    batches = [b for b in (_progress(p) for p in query.recentProgress) if b["rows"]]
    in_batches_s = sum(b["trigger_execution_ms"] or 0 for b in batches) / 1000
    # outside the batches: the query's start (Kafka source, checkpoint, file sink log) and its stop
    return {"seconds": round(seconds, 3), "outside_batches_s": round(seconds - in_batches_s, 3), "batches": batches}


def check_sink(spark: Any, settings: Settings, events: int) -> dict[str, int]:
    """The master log (read through the file sink's log) must hold each request once, and nothing else."""
    from pyspark.sql import functions as F

    log = spark.read.parquet(lake.spark_uri(settings.master_events_uri))
    requests = log.where(F.col("topic") == settings.kafka.trip_requests_topic)
    counts = {"rows": log.count(), "request_rows": requests.count(),
              "distinct_offsets": requests.select("partition", "offset").distinct().count(),
              "files": len(log.inputFiles())}
    _require("lake sink", counts, events)
    return counts


# --------------------------------------------------------------------------------------------------- the baseline
def to_table(messages: list[Any]) -> Any:
    """Kafka records as a pyarrow table of the lake sink's columns (``speed.lake_sink.COLUMNS``)."""
    import numpy as np
    import pyarrow as pa

    ms = np.fromiter((m.timestamp()[1] for m in messages), dtype=np.int64, count=len(messages))
    return pa.table({
        "topic": pa.array([m.topic() for m in messages], pa.string()),
        "partition": pa.array([m.partition() for m in messages], pa.int32()),
        "offset": pa.array([m.offset() for m in messages], pa.int64()),
        "timestamp": pa.array(ms * 1000, pa.timestamp("us", tz="UTC")),
        "key": pa.array([m.key() for m in messages], pa.binary()),
        "value": pa.array([m.value() for m in messages], pa.binary()),
        "date": pa.array((ms // MS_PER_DAY).astype(np.int32), pa.date32()),
    })


def write_files(fs: Any, base: str, table: Any, batch_no: int, made: set[str]) -> int:
    """``table`` as one Parquet file per (topic, date) under ``base/topic=<t>/date=<d>/``; files written."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    groups = table.group_by(["topic", "date"]).aggregate([])
    files = 0
    for topic, day in zip(groups["topic"].to_pylist(), groups["date"].to_pylist()):
        part = table.filter(pc.and_(pc.equal(table["topic"], topic), pc.equal(table["date"], day)))
        folder = f"{base}/topic={topic}/date={day.isoformat()}"
        if folder not in made:
            fs.create_dir(folder, recursive=True)
            made.add(folder)
        pq.write_table(part.select(["partition", "offset", "timestamp", "key", "value"]),
                       f"{folder}/part-{batch_no:05d}-{uuid.uuid4().hex}.snappy.parquet", filesystem=fs,
                       compression="snappy")
        files += 1
    return files


def run_consumer(settings: Settings, uri: str, topics: list[str], expected: int, batch_rows: int,
                 timeout: float) -> dict[str, Any]:
    """Consume every record of ``topics`` from the beginning and write it as Parquet; seconds, files, batches."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    fs, base = lake.filesystem(settings, uri)
    consumer = kafka.consumer(settings, f"bench-lake-sink-loop-{uuid.uuid4().hex[:8]}")
    try:
        metadata = consumer.list_topics(timeout=10).topics
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata[t].partitions])
        made: set[str] = set()
        buffered: list[Any] = []
        consumed = files = batch_no = 0
        t0 = time.perf_counter()
        deadline = time.monotonic() + timeout
        while consumed < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"plain consumer: {consumed:,}/{expected:,} records after {timeout:.0f}s")
            for msg in consumer.consume(num_messages=CONSUME_BATCH, timeout=CONSUME_TIMEOUT_S):
                if msg.error() is not None:
                    raise RuntimeError(f"plain consumer: {msg.error()}")
                buffered.append(msg)
            consumed_now = consumed + len(buffered)
            if len(buffered) >= batch_rows or (consumed_now >= expected and buffered):
                files += write_files(fs, base, to_table(buffered), batch_no, made)
                batch_no += 1
                consumed, buffered = consumed_now, []
        seconds = time.perf_counter() - t0
    finally:
        consumer.close()
    return {"seconds": round(seconds, 3), "files": files, "batches": batch_no}


def check_files(settings: Settings, uri: str, request_topic: str, events: int) -> dict[str, int]:
    """The consumer's files must hold each request once, and nothing else."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    fs, base = lake.filesystem(settings, uri)
    hive = ds.partitioning(pa.schema([("topic", pa.string()), ("date", pa.string())]), flavor="hive")
    data = ds.dataset(base, filesystem=fs, format="parquet", partitioning=hive)
    table = data.to_table(columns=["topic", "partition", "offset"])
    requests = table.filter(pc.equal(table["topic"], request_topic))
    counts = {"rows": table.num_rows, "request_rows": requests.num_rows,
              "distinct_offsets": requests.group_by(["partition", "offset"]).aggregate([]).num_rows,
              "files": len(data.files)}
    _require("plain consumer", counts, events)
    return counts


def _require(label: str, counts: dict[str, int], events: int) -> None:
    if not counts["rows"] == counts["request_rows"] == counts["distinct_offsets"] == events:
        raise RuntimeError(f"{label}: expected exactly {events:,} request rows, each offset once, and nothing "
                           f"else; found {counts}")


# --------------------------------------------------------------------------------------------------- the CLI
app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    events: Annotated[int, typer.Option(help="Trip requests in the topic, read by both lines.")] = 200_000,
    batch_rows: Annotated[int, typer.Option(help="Records per Parquet write of the plain consumer (one file per "
                                                 "topic and day each).")] = 50_000,
    timeout: Annotated[float, typer.Option(help="Longest either line may take, seconds.")] = 900.0,
    out: Annotated[Path | None, typer.Option(help=common.OUT_HELP)] = None,
) -> None:
    """Compare events/s of the lake sink (Spark file sink, exactly once) with a plain consumer writing Parquet."""
    started = time.monotonic()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    unique = uuid.uuid4().hex[:8]
    checkpoint = tempfile.mkdtemp(prefix="lambdaml-bench-lake-sink-")
    s = private_settings(get_settings(), unique, checkpoint)
    loop_uri = s.s3.uri("bench", "lake_sink_loop", unique)
    topics = list(s.kafka.topics)
    request_topic = s.kafka.trip_requests_topic
    spark = None
    try:
        typer.echo(f"building {events:,} requests")
        messages = request_messages(f"lake-{unique}", events)
        payload_bytes = sum(len(k) + len(v) for k, v in messages)
        try:
            kafka.ensure_topics(s)
        except Exception as exc:  # noqa: BLE001 - KafkaException and friends
            raise RuntimeError(f"Kafka at {s.kafka.bootstrap} does not answer: run `make stack-up` first ({exc})") \
                from exc
        typer.echo(f"topics: bench.{unique}.* ({len(topics)}, {s.kafka.partitions} partitions each)")
        produce_s = produce(s, request_topic, messages)
        del messages
        landed = high_watermarks(s, topics)
        if landed[request_topic] != events or sum(landed.values()) != events:
            raise RuntimeError(f"expected {events:,} records in {request_topic} and none elsewhere, found {landed}")
        typer.echo(f"produced {events:,} requests to {request_topic} in {produce_s:.1f}s (not timed)")

        typer.echo(f"\n== lake sink: {s.spark.master}, trigger {TRIGGER} -> {s.master_events_uri}")
        from core.spark import build_session

        t0 = time.perf_counter()
        spark = build_session(s, "lambdaml-bench-lake-sink", s.speed.jvm_options)  # the JVM options of the sink
        spark.sparkContext.setLogLevel("WARN")
        session_s = time.perf_counter() - t0
        sink = {"session_build_s": round(session_s, 3)} | run_sink(spark, s, checkpoint, timeout)
        sink["events_per_s"] = round(events / sink["seconds"], 1)
        typer.echo(f"  {sink['seconds']:.2f}s in {len(sink['batches'])} batch(es), {sink['events_per_s']:,.0f} "
                   f"events/s (session build {session_s:.1f}s, not counted)")
        sink["check"] = check_sink(spark, s, events)
        typer.echo(f"  checked: {sink['check']}")
        spark.stop()
        spark = None

        typer.echo(f"\n== plain consumer: consume({CONSUME_BATCH:,}) -> pyarrow -> Parquet every "
                   f"{batch_rows:,} records -> {loop_uri}")
        loop = run_consumer(s, loop_uri, topics, events, batch_rows, timeout)
        loop["events_per_s"] = round(events / loop["seconds"], 1)
        typer.echo(f"  {loop['seconds']:.2f}s, {loop['files']} file(s), {loop['events_per_s']:,.0f} events/s")
        loop["check"] = check_files(s, loop_uri, request_topic, events)
        typer.echo(f"  checked: {loop['check']}")
    finally:
        if spark is not None:
            spark.stop()
        remove(s, topics, [s.master_events_uri, loop_uri], checkpoint)

    common.write_result(
        NAME,
        parameters={"events": events, "batch_rows": batch_rows, "consume_batch": CONSUME_BATCH,
                    "trigger": TRIGGER, "spark_master": s.spark.master, "jvm_options": s.speed.jvm_options,
                    "lake_sink_max_offsets_per_trigger": s.speed.lake_sink_max_offsets_per_trigger,
                    "topics": len(topics), "topic_partitions": s.kafka.partitions,
                    "payload_bytes_mean": round(payload_bytes / events, 1) if events else None,
                    "producer": PRODUCER_CONFIG, "produce_s": round(produce_s, 3),
                    "note": "one after the other on the same cores; the sink's time excludes building the session; "
                            "the consumer's runs from the first consume to the last file written",
                    "load_average_at_start": load_at_start,
                    "elapsed_s": round(time.monotonic() - started, 1)},
        measurements={"lake_sink": sink, "plain_consumer": loop},
        ratios={"lake_sink/plain_consumer events_per_s": sink["events_per_s"] / loop["events_per_s"]},
        echo=typer.echo,
        summary=[common.comparison("lake sink (Spark file sink, exactly once)", sink["events_per_s"],
                                   "plain consumer writing Parquet", loop["events_per_s"], "events/s",
                                   higher_is_better=True)],
        out=out,
    )


if __name__ == "__main__":
    app()

"""The lake sink: every event topic copied into the lake as append-only Parquet, exactly once.

The master log of the Lambda architecture: requests, predictions, outcomes, dead letters, metrics,
model announcements and batch events, each record as Kafka holds it (key and value bytes, topic,
partition, offset, timestamp), under ``<master_events>/topic=<topic>/date=<yyyy-mm-dd>/`` by the
record's Kafka timestamp (UTC). Nothing is parsed, so nothing a client sends can fail it, and a dead
letter's whole payload stays reachable here at its source coordinates after Kafka's retention.

One Spark Structured Streaming query with the file sink: the sink's own log (``_spark_metadata``
beside the data) and the query's checkpoint make each offset land exactly once, across restarts. It
runs on a slow trigger (``lake_sink_trigger``), in one task a batch, so that a batch writes one file
per topic and day.

It runs as a Spark application of its own (``lambdaml speed up`` starts it as ``speed-lake-sink``),
at a lower CPU priority (``lake_sink_nice``), not in the scoring job's application. Measured on the
2-core VM (bench/results/2026-12-03-x86_64-2cpu-24g-stream-lake-sink.md): inside the scoring job's
application its batches took the cores the scoring tasks wait for, and the job's backlog throughput
fell from 12,300 to 6,317 events/s. A failed query is restarted with backoff (``speed.stream.supervise``).

Run it with ``python -m speed.lake_sink``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from core.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

log = logging.getLogger("lambdaml.speed.lake_sink")
QUERY_NAME = "lake_sink"
STATUS_FILE = "lake-sink-status.json"
COLUMNS = ("topic", "partition", "offset", "timestamp", "key", "value", "date")


def rows(kafka_rows: "DataFrame") -> "DataFrame":
    """Kafka rows as the master log keeps them: bytes unchanged, plus the UTC date of the Kafka timestamp."""
    from pyspark.sql import functions as F

    return kafka_rows.select("topic", "partition", "offset", "timestamp", "key", "value",
                             F.to_date(F.col("timestamp")).alias("date"))


def start(spark, settings: Settings, checkpoint: str | None = None):
    """Start the lake sink; returns the ``StreamingQuery``."""
    from speed.stream import trigger_kwargs

    k, s = settings.kafka, settings.speed
    source = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", k.bootstrap)
        .option("subscribe", ",".join(k.topics))
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "false")
        .option("maxOffsetsPerTrigger", s.lake_sink_max_offsets_per_trigger)
        .load()
    )
    return (
        rows(source).coalesce(1).writeStream.queryName(QUERY_NAME)
        .format("parquet").partitionBy("topic", "date")
        .option("path", settings.master_events_uri)
        .option("checkpointLocation", checkpoint or settings.lake_sink_checkpoint)
        .trigger(**trigger_kwargs(s.lake_sink_trigger))
        .start()
    )


def progress_summary(progress: dict[str, Any]) -> dict[str, Any]:
    """What ``lambdaml speed status`` shows of a lake-sink batch: rows, seconds, and how far it is behind Kafka
    (the largest number of offsets any partition of its topics is behind, as the Kafka source reports it)."""
    sources = progress.get("sources") or [{}]
    metrics = sources[0].get("metrics") or {}
    behind = metrics.get("maxOffsetsBehindLatest")
    return {"batch_id": progress.get("batchId"), "rows": progress.get("numInputRows", 0),
            "seconds": round((progress.get("batchDuration") or 0) / 1000, 3),
            "offsets_behind": int(float(behind)) if behind not in (None, "") else None,
            "at": progress.get("timestamp")}


def listener(status):
    """The lake sink's progress into its status file (``lambdaml speed status`` reads it)."""
    from core.spark import QueryListener

    class LakeSinkListener(QueryListener):
        batches = 0

        def started(self, query_id: str) -> None:
            status.write({"state": "started", "batches": self.batches})

        def progress(self, progress: dict) -> None:
            self.batches += 1
            status.write({"state": "running", "batches": self.batches, "last": progress_summary(progress)})

        def terminated(self, exception: str | None) -> None:
            status.write({"state": "failed" if exception else "stopped", "batches": self.batches,
                          "error": (exception or "")[:2000]})

    return LakeSinkListener()


def main() -> None:
    from core.settings import get_settings
    from core.spark import add_listener, build_session
    from speed.stream import StatusFile, supervise

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = get_settings()
    os.nice(settings.speed.lake_sink_nice)  # before the JVM starts: it inherits the priority
    # Its own small master: a never-ending application must not hold a cluster's cores (on the cluster profile
    # the scoring job holds spark.cores.max already; the batch jobs need the rest).
    settings = settings.model_copy(update={"spark": settings.spark.model_copy(
        update={"master": settings.speed.lake_sink_master})})
    spark = build_session(settings, "lambdaml-lake-sink", settings.speed.jvm_options)
    spark.sparkContext.setLogLevel("WARN")
    log.info("lake sink: %s -> %s (%s, checkpoint %s)", ",".join(settings.kafka.topics), settings.master_events_uri,
             settings.speed.lake_sink_trigger, settings.lake_sink_checkpoint)
    status = StatusFile(settings, STATUS_FILE)
    add_listener(spark, listener(status))
    supervise(spark, settings, status, {QUERY_NAME: lambda: start(spark, settings)})


if __name__ == "__main__":
    main()

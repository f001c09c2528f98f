"""``core.spark.add_listener`` on a local Spark: a listener gets each event as Spark's JSON, observed metrics
included, and hears why a failed query stopped."""

import threading

import pytest

from core.spark import QueryListener, add_listener
from tests.polling import wait_until


class Recorder(QueryListener):
    def __init__(self) -> None:
        self.started_ids: list[str] = []
        self.progresses: list[dict] = []
        self.stopped: list[str | None] = []
        self.done = threading.Event()

    def started(self, query_id: str) -> None:
        self.started_ids.append(query_id)

    def progress(self, progress: dict) -> None:
        self.progresses.append(progress)

    def terminated(self, exception: str | None) -> None:
        self.stopped.append(exception)
        self.done.set()


def test_listener_reads_progress_json_with_observed_metrics(local_spark, tmp_path):
    from pyspark.sql import functions as F

    recorder = Recorder()
    add_listener(local_spark, recorder)
    rows = (local_spark.readStream.format("rate").option("rowsPerSecond", 50).load()
            .observe("batch", F.count(F.lit(1)).alias("events"), F.max("value").alias("last")))
    query = (rows.writeStream.queryName("listener_test").format("noop")
             .option("checkpointLocation", str(tmp_path / "checkpoint")).trigger(processingTime="200 milliseconds")
             .start())
    try:
        wait_until(lambda: any((p.get("observedMetrics") or {}).get("batch", {}).get("events")
                               for p in recorder.progresses), timeout=60)
    finally:
        query.stop()
    assert recorder.done.wait(30)
    assert recorder.started_ids == [str(query.id)]
    assert recorder.stopped == [None]
    with_rows = [p for p in recorder.progresses if p["numInputRows"]]
    assert with_rows and all(p["name"] == "listener_test" and p["id"] == str(query.id) for p in with_rows)
    metrics = with_rows[0]["observedMetrics"]["batch"]
    assert metrics["events"] == with_rows[0]["numInputRows"]
    assert isinstance(metrics["last"], int)
    assert "addBatch" in with_rows[0]["durationMs"]


def test_listener_hears_why_a_query_failed(local_spark, tmp_path):
    from pyspark.sql import functions as F

    recorder = Recorder()
    add_listener(local_spark, recorder)
    rows = (local_spark.readStream.format("rate").option("rowsPerSecond", 5).load()
            .select(F.raise_error(F.lit("the listener must see this")).alias("x")))
    query = (rows.writeStream.format("noop").option("checkpointLocation", str(tmp_path / "checkpoint"))
             .trigger(processingTime="200 milliseconds").start())
    with pytest.raises(Exception):
        query.awaitTermination(60)
    assert recorder.done.wait(30)
    assert recorder.stopped and "the listener must see this" in (recorder.stopped[0] or "")

"""Scaling on the cluster profile: events/s of the stream's Spark work against Spark workers and Kafka partitions.

For each number of partitions (``--partitions 1,3,6``) a topic of that many partitions (replication 3,
min.insync.replicas 2) gets the same ``--events`` trip requests from the replay generator, a few of them
malformed. For each number of Spark workers (``--workers 1,2``; the other workers are stopped by their pid
files), one application reads the whole topic from Kafka and runs what the streaming job runs per
micro-batch before it calls the prediction service: in the Python workers (``mapInArrow``), every event read
by the request contract (``speed.stream.read_batch``) and the in-process form of ``workloads.taxi.features``, into
Spark's ``noop`` sink.
The figure is events / wall seconds of that job, best of ``--repeats``. Each application takes every
core the running workers offer (``spark.cores.max`` = workers x ``cluster.spark_worker_cores``).

It runs on a cluster stack: with ``LAMBDAML_PROFILE=cluster`` the configured one; otherwise one beside the
default stack (runtime folder ``<runtime>/cluster``, every port + 200, as the cluster e2e test does). It
starts the Kafka brokers and the Spark master and workers it needs and stops, at the end, only those it
started.

    python -m bench.scaling                    # full: 200k events, workers 1,2, partitions 1,3,6
    python -m bench.scaling --events 5000 --repeats 1 --partitions 1,3   # smoke
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Annotated

import typer

from bench.common import OUT_HELP, comparison, write_result
from deploy.local.cluster_env import cluster_env

app = typer.Typer(add_completion=False, help=__doc__)
DAY = dt.date(2026, 3, 2)




def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def fill_topic(settings, topic: str, partitions: int, events: int, malformed_share: float) -> int:
    """Create ``topic`` afresh and write ``events`` requests to it (acks=all). Returns the count written."""
    from confluent_kafka.admin import AdminClient, NewTopic

    from batch.replay import plan_day, schedule
    from core import kafka

    admin = AdminClient(kafka.client_config(settings))
    if topic in admin.list_topics(timeout=30).topics:
        for f in admin.delete_topics([topic]).values():
            f.result()
        time.sleep(2)
    k = settings.kafka
    new = NewTopic(topic, num_partitions=partitions, replication_factor=k.replication_factor,
                   config=kafka.topic_configs(settings, k.trip_requests_topic))
    for f in admin.create_topics([new], request_timeout=60).values():
        f.result()
    producer = kafka.producer(settings)
    n = 0
    for message in schedule(plan_day(DAY, events, seed=5), rate=1e9, malformed_share=malformed_share):
        if message.kind == "completed":
            continue
        while True:
            try:
                producer.produce(topic, key=message.key.encode(), value=message.value)
                break
            except BufferError:
                producer.poll(0.1)
        n += 1
    if producer.flush(120):
        raise RuntimeError(f"{topic}: not every event was acknowledged")
    return n


def stream_work(spark, settings, topic: str) -> int:
    """What the streaming job runs per micro-batch before scoring, over the whole topic; returns rows read."""
    from speed import stream

    rows = (spark.read.format("kafka").option("kafka.bootstrap.servers", settings.kafka.bootstrap)
            .option("subscribe", topic).option("startingOffsets", "earliest").option("endingOffsets", "latest")
            .load())
    rows.cache()  # noqa: the Kafka read is timed with the work, the count is not
    out = stream.source_rows(rows).mapInArrow(_prepare(settings), "valid long, dead long")
    out.write.format("noop").mode("overwrite").save()
    n = rows.count()
    rows.unpersist()
    return n


def _prepare(settings):
    """The stream's work before scoring, per Arrow batch: read each event, compute the valid ones' features."""

    def run(batches):
        import pyarrow as pa

        from speed import stream
        from speed.predictor import request_columns
        from workloads.taxi import features

        for batch in batches:
            read = stream.read_batch(batch, settings)
            if read.requests:
                features.compute_numpy(request_columns(read.requests))
            yield pa.RecordBatch.from_pydict({"valid": [len(read.requests)], "dead": [len(read.dead)]})

    return run


def set_workers(settings, count: int, echo) -> list[str]:
    """Exactly ``count`` Spark workers running; returns the names this call started."""
    from deploy.local.services import SparkWorker, services_for
    from deploy.local.stack import Stack

    workers = [cls.name for cls in services_for(settings) if issubclass(cls, SparkWorker)]
    if count > len(workers):
        raise typer.BadParameter(f"{count} workers asked, the cluster has {len(workers)} "
                                 "(LAMBDAML_CLUSTER__SPARK_WORKERS)")
    if workers[count:]:  # (an empty `only` means every service)
        Stack(settings, only=workers[count:], with_dependencies=False, echo=echo).down()
    up = Stack(settings, only=workers[:count], echo=echo)
    before = {s.name for s in up.status() if s.healthy}
    up.up()
    return [w for w in workers[:count] if w not in before]


@app.command()
def main(
    events: Annotated[int, typer.Option(min=100, help="Requests per topic.")] = 200_000,
    workers: Annotated[str, typer.Option(help="Spark worker counts to measure, comma-separated.")] = "1,2",
    partitions: Annotated[str, typer.Option(help="Kafka partition counts to measure, comma-separated.")] = "1,3,6",
    repeats: Annotated[int, typer.Option(min=1, help="Timed runs per point; the best is kept.")] = 2,
    malformed_share: Annotated[float, typer.Option(help="Share of malformed events.")] = 0.01,
    out: Annotated[Path | None, typer.Option(help=OUT_HELP)] = None,
) -> None:
    from core.settings import Settings, get_settings
    from deploy.local.services import services_for
    from deploy.local.stack import Stack

    env = cluster_env(get_settings())
    os.environ.update(env)  # children (the Spark daemons, brokers) read the same settings
    get_settings.cache_clear()
    s: Settings = get_settings()
    echo = lambda line: print(line, flush=True)  # noqa: E731
    names = [cls.name for cls in services_for(s) if cls.name.startswith(("kafka", "spark-"))]
    stack = Stack(s, only=names, echo=echo)
    already = {x.name for x in stack.status() if x.healthy}
    echo(f"cluster stack under {s.runtime_dir}: {', '.join(names)}")
    stack.up()
    started = [n for n in names if n not in already]
    worker_counts, partition_counts = _ints(workers), _ints(partitions)
    points: list[dict] = []
    try:
        topics = {}
        for p in partition_counts:
            topic = f"bench.scaling.p{p}"
            t0 = time.monotonic()
            topics[p] = fill_topic(s, topic, p, events, malformed_share)
            echo(f"  {topic}: {topics[p]:,} events written in {time.monotonic() - t0:.1f}s")
        for w in worker_counts:
            started += [n for n in set_workers(s, w, echo) if n not in started and n not in already]
            cores = w * s.cluster.spark_worker_cores
            extra = {**s.spark.extra_conf, "spark.cores.max": str(cores)}
            ws = s.model_copy(update={"spark": s.spark.model_copy(update={"extra_conf": extra})})
            from pyspark.sql import SparkSession

            from core.spark import build_session

            active = SparkSession.getActiveSession()
            if active is not None:
                active.stop()
            spark = build_session(ws, f"bench-scaling-{w}w")
            spark.sparkContext.setLogLevel("WARN")
            try:
                stream_work(spark, ws, f"bench.scaling.p{partition_counts[0]}")  # warm-up: JIT, executors
                for p in partition_counts:
                    times = []
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        n = stream_work(spark, ws, f"bench.scaling.p{p}")
                        times.append(time.perf_counter() - t0)
                        assert n == topics[p], (n, topics[p])
                    best = min(times)
                    points.append({"workers": w, "executor_cores": cores, "partitions": p, "events": n,
                                   "seconds": round(best, 3), "events_per_s": round(n / best, 1),
                                   "all_seconds": [round(t, 3) for t in times]})
                    echo(f"  workers={w} partitions={p}: {n / best:,.0f} events/s ({best:.2f}s)")
            finally:
                spark.stop()
        set_workers(s, max(len([c for c in services_for(s) if c.name.startswith("spark-worker")]), 1), echo)
    finally:
        if started:
            Stack(s, only=started, with_dependencies=False, echo=echo).down()

    def rate(w: int, p: int) -> float | None:
        return next((x["events_per_s"] for x in points if x["workers"] == w and x["partitions"] == p), None)

    lo_w, hi_w, lo_p, hi_p = min(worker_counts), max(worker_counts), min(partition_counts), max(partition_counts)
    summary = [
        comparison(f"{hi_w} workers, {hi_p} partitions", rate(hi_w, hi_p), f"{lo_w} worker, {hi_p} partitions",
                   rate(lo_w, hi_p), "events/s", True),
        comparison(f"{hi_w} workers, {hi_p} partitions", rate(hi_w, hi_p), f"{hi_w} workers, {lo_p} partition",
                   rate(hi_w, lo_p), "events/s", True),
    ]
    ratios = {k: v for k, v in {
        "workers_speedup": (rate(hi_w, hi_p) or 0) / (rate(lo_w, hi_p) or 1),
        "partitions_speedup": (rate(hi_w, hi_p) or 0) / (rate(hi_w, lo_p) or 1),
    }.items()}
    load1, load5, _ = os.getloadavg()
    write_result("scaling", {"events": events, "workers": worker_counts, "partitions": partition_counts,
                             "repeats": repeats, "malformed_share": malformed_share,
                             "worker_cores": s.cluster.spark_worker_cores,
                             "executor_cores": s.cluster.spark_executor_cores,
                             "executor_memory": s.cluster.spark_executor_memory,
                             "kafka_brokers": s.kafka.brokers, "replication_factor": s.kafka.replication_factor,
                             "load_average_at_end": [round(load1, 2), round(load5, 2)]},
                 {"points": points}, ratios, echo=echo, summary=summary, out=out)


if __name__ == "__main__":
    app()

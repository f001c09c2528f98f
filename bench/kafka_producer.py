"""Messages per second into Kafka: the platform's replay producer against a tuned plain producer.

Two lines, on the running local broker, into the same two private topics (created like the
platform's: same partitions and replication), the same number of messages each:

- ``platform``: ``batch.replay.replay`` unpaced (``rate=inf``, ``time_scale=inf``: every trip's
  request goes to the requests topic and its completion to the completed topic at once), i.e. the
  producer ``core.kafka.producer`` configures (idempotent, ``acks=all``, ``linger.ms=20``, lz4) fed
  by the replay's messages, whose keys and JSON it builds a chunk of 4,096 at a time, column by
  column (``core.jsonrows``), with the replay's delivery checks; its time is the replay's own
  ``elapsed_s`` (first send to the end of ``flush``: building the messages is inside it, plan
  generation and producer start-up are not);
- ``baseline``: a confluent-kafka producer with the same delivery guarantee (idempotent,
  ``acks=all``, lz4) and bigger batches (``linger.ms=50``, ``batch.size`` 1 MiB,
  ``batch.num.messages`` 10,000) sending one constant pre-serialized payload under the same keys,
  alternating between the same two topics; timed from the first ``produce`` to the end of
  ``flush``, its delivery callbacks counted.

Target: the replay at least half the plain producer's rate (``TARGET``). The replay's messages are
real requests and outcomes, each different, where the baseline sends one constant payload, so it
compresses and batches a little better.

After each run the topics' high watermarks must have grown by exactly the messages sent, so a
run that lost messages cannot produce a number. Rounds alternate between the lines (one untimed
warm-up round, then ``--repeats`` timed); medians are reported.

Run: ``python -m bench.kafka_producer`` (the local stack's Kafka must be up). Writes
bench/results/kafka_producer.json.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from batch import replay
from bench import common
from core import kafka
from core.settings import Settings, get_settings

NAME = "kafka_producer"
DAY = dt.date(2026, 1, 5)
BASELINE_CONFIG = {"enable.idempotence": True, "acks": "all", "compression.type": "lz4", "linger.ms": 50,
                   "batch.size": 1_048_576, "batch.num.messages": 10_000,
                   "queue.buffering.max.messages": 1_000_000}
FLUSH_TIMEOUT_S = 120.0
TARGET = 0.5  # replay / plain producer, messages/s


class PrivateTopics:
    """The requests and completed topics under private names, created like the platform's, deleted on exit."""

    def __init__(self, base: Settings):
        unique = uuid.uuid4().hex[:8]
        names = {f: f"bench.{unique}.{getattr(base.kafka, f)}" for f in ("trip_requests_topic", "trip_completed_topic")}
        self.settings = base.model_copy(update={"kafka": base.kafka.model_copy(update=names)})
        self.topics = list(names.values())

    def __enter__(self) -> PrivateTopics:
        from confluent_kafka.admin import AdminClient, NewTopic

        k = self.settings.kafka
        admin = AdminClient(kafka.client_config(self.settings))
        try:
            admin.list_topics(timeout=10)
        except Exception as exc:  # noqa: BLE001 - KafkaException and friends
            raise RuntimeError(f"Kafka at {k.bootstrap} does not answer: run `make stack-up` first ({exc})") from exc
        new = [NewTopic(t, num_partitions=k.partitions, replication_factor=k.replication_factor,
                        config=kafka.topic_configs(self.settings, t)) for t in self.topics]
        for future in admin.create_topics(new).values():
            future.result()
        self._wait_for_leaders()
        typer.echo(f"topics: {', '.join(self.topics)} ({k.partitions} partitions each)")
        return self

    def __exit__(self, *_: object) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(kafka.client_config(self.settings))
        for future in admin.delete_topics(self.topics).values():
            future.result()
        typer.echo(f"removed the topics {', '.join(self.topics)}")

    def _wait_for_leaders(self, timeout: float = 30.0) -> None:
        """New topics answer offset requests only once every partition has a leader."""
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.high_watermarks()
                return
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def high_watermarks(self) -> int:
        """Messages in both topics: the sum of every partition's high watermark."""
        from confluent_kafka import TopicPartition

        consumer = kafka.consumer(self.settings, f"bench-{uuid.uuid4().hex[:8]}")
        try:
            total = 0
            for topic in self.topics:
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                for p in partitions:
                    total += consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            return total
        finally:
            consumer.close()


def platform_run(settings: Settings, trips: int, seed: int) -> tuple[float, int]:
    """The replay, unpaced: seconds from the first send to the end of the flush, and messages sent."""
    summary = replay.replay(settings, DAY, trips, rate=math.inf, seed=seed, time_scale=math.inf,
                            echo=lambda _: None)
    return summary.elapsed_s, summary.requests + summary.completions + summary.malformed


def baseline_run(settings: Settings, topics: list[str], keys: list[bytes], payload: bytes) -> tuple[float, int]:
    """One constant payload under ``keys``, each key once per topic in turn; seconds and confirmed deliveries."""
    from confluent_kafka import Producer

    producer = Producer(kafka.client_config(settings, **BASELINE_CONFIG))
    producer.list_topics(timeout=10)  # metadata first, as the replay does before it starts its clock
    delivered = failed = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal delivered, failed
        if err is None:
            delivered += 1
        else:
            failed += 1

    t0 = time.perf_counter()
    for key in keys:
        for topic in topics:
            while True:
                try:
                    producer.produce(topic, key=key, value=payload, on_delivery=on_delivery)
                    break
                except BufferError:  # the local queue is full: let deliveries drain it
                    producer.poll(0.1)
    remaining = producer.flush(FLUSH_TIMEOUT_S)
    elapsed = time.perf_counter() - t0
    if remaining or failed:
        raise RuntimeError(f"baseline: {remaining} message(s) still queued, {failed} failed")
    return elapsed, delivered


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    trips: Annotated[int, typer.Option(help="Trips per run: each is one request and one completion message.")]
    = 300_000,  # rounds of about 2 s: at 100,000 (under 1 s each) one noisy round moved the median by 0.1x
    repeats: Annotated[int, typer.Option(help="Timed rounds (each runs both lines); medians are reported.")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed rounds before the timed ones.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the generated trips.")] = 7,
    out: Annotated[Path | None, typer.Option(help=common.OUT_HELP)] = None,
) -> None:
    """Compare messages/s of the platform's replay producer with a plain batched producer of a constant payload."""
    started = time.monotonic()
    typer.echo(f"planning {trips:,} trips of {DAY}")
    plan = replay.plan_day(DAY, trips, seed)
    keys = [key.encode() for key in plan.keys()]
    first = next(replay.schedule(plan, rate=math.inf, time_scale=math.inf))
    payload = first.value
    sizes = [len(m.value) for m in replay.schedule(plan, rate=math.inf, time_scale=math.inf)]
    messages = 2 * len(keys)
    if len(sizes) != messages:
        raise RuntimeError(f"the replay plans {len(sizes)} messages for {len(keys)} trips, expected {messages}")
    seconds: dict[str, list[float]] = {"platform": [], "baseline": []}
    with PrivateTopics(get_settings()) as topics:
        runs = {"platform": lambda: platform_run(topics.settings, trips, seed),
                "baseline": lambda: baseline_run(topics.settings, topics.topics, keys, payload)}
        typer.echo(f"{warmup} warm-up + {repeats} timed rounds of {messages:,} messages, each runs "
                   f"{', '.join(runs)}")
        for i in range(warmup + repeats):
            kind = "warm-up" if i < warmup else f"round {i - warmup + 1}/{repeats}"
            for name, run in runs.items():
                before = topics.high_watermarks()
                elapsed, sent = run()
                landed = topics.high_watermarks() - before
                if sent != messages or landed != messages:
                    raise RuntimeError(f"{name}: {sent:,} sent and {landed:,} in the topics, expected {messages:,}")
                typer.echo(f"  {kind} {name}: {elapsed:.2f} s, {messages / elapsed:,.0f} messages/s "
                           f"({landed:,} confirmed in the topics)")
                if i >= warmup:
                    seconds[name].append(elapsed)
        partitions = topics.settings.kafka.partitions

    median = {name: common.median(s) for name, s in seconds.items()}
    rate = {name: messages / median[name] for name in seconds}
    common.write_result(
        NAME,
        parameters={"trips": trips, "messages_per_run": messages, "repeats": repeats, "warmup": warmup,
                    "seed": seed, "day": DAY.isoformat(), "topic_partitions": partitions,
                    "platform_producer": "core.kafka.producer (enable.idempotence, acks=all, linger.ms=20, lz4), "
                                         "batch.replay.replay with rate=inf, time_scale=inf",
                    "platform_payload_bytes_mean": round(statistics.fmean(sizes), 1),
                    "baseline_producer": BASELINE_CONFIG, "baseline_payload_bytes": len(payload),
                    "elapsed_s": round(time.monotonic() - started, 1)},
        measurements={name: {"median_s": round(median[name], 3), "messages_per_s": round(rate[name]),
                             "runs_s": [round(x, 3) for x in s]} for name, s in seconds.items()},
        ratios={"platform/baseline messages_per_s": rate["platform"] / rate["baseline"]},
        echo=typer.echo,
        summary=[common.comparison("platform", rate["platform"], "baseline", rate["baseline"], "messages/s",
                                   higher_is_better=True, target=f"ratio >= {TARGET}",
                                   met=rate["platform"] >= TARGET * rate["baseline"])],
        out=out,
    )


if __name__ == "__main__":
    app()

"""Spark Structured Streaming reads from the real Kafka broker what was produced."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic

from core import kafka as k


def test_read_stream_from_kafka_returns_produced_rows(spark, settings, unique, tmp_path):
    topic = f"it.stream.{unique}"
    admin = AdminClient(k.client_config(settings))
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=30)
    producer = k.producer(settings)
    expected = {f"trip-{i}": i * 1.5 for i in range(40)}
    for key, distance in expected.items():
        producer.produce(topic, key=key.encode(), value=k.encode({"trip_id": key, "trip_distance": distance}))
    assert producer.flush(30) == 0

    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    schema = StructType([StructField("trip_id", StringType()), StructField("trip_distance", DoubleType())])
    stream = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .select(F.from_json(F.col("value").cast("string"), schema).alias("e"))
        .select("e.*")
    )
    query_name = f"it_stream_{unique}"
    query = (
        stream.writeStream.format("memory")
        .queryName(query_name)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    assert query.awaitTermination(120)
    assert query.exception() is None
    got = {r.trip_id: r.trip_distance for r in spark.table(query_name).collect()}
    assert got == expected
    admin.delete_topics([topic])

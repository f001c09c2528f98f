"""Kafka: the real KRaft broker carries messages and holds the platform's topics."""

from __future__ import annotations

import time

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from core import kafka as k


def test_produce_and_consume_round_trip(stack, settings, unique):
    topic = f"it.roundtrip.{unique}"
    admin = AdminClient(k.client_config(settings))
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(timeout=30)

    sent = {f"trip-{i}": {"trip_id": f"trip-{i}", "n": i} for i in range(50)}
    producer = k.producer(settings)
    for key, value in sent.items():
        producer.produce(topic, key=key.encode(), value=k.encode(value))
    assert producer.flush(30) == 0

    consumer = k.consumer(settings, group_id=f"it-{unique}")
    consumer.subscribe([topic])
    received: dict[str, dict] = {}
    deadline = time.monotonic() + 60
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            received[msg.key().decode()] = k.decode(msg.value())
    finally:
        consumer.close()
    assert received == sent
    admin.delete_topics([topic])


def test_platform_topics_exist_and_models_is_compacted(stack, settings):
    admin = AdminClient(k.client_config(settings))
    topics = admin.list_topics(timeout=10).topics
    for name in settings.kafka.topics:
        assert name in topics, f"topic {name} missing"
    assert len(topics[settings.kafka.trip_requests_topic].partitions) == settings.kafka.partitions

    resource = ConfigResource(ConfigResource.Type.TOPIC, settings.kafka.models_topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=10)
    assert configs["cleanup.policy"].value == "compact"


def test_models_topic_keeps_latest_per_key_readable(stack, settings, unique):
    """A value written to the compacted topic is read back under its key."""
    producer = k.producer(settings)
    key = f"it-model-{unique}"
    producer.produce(settings.kafka.models_topic, key=key.encode(), value=k.encode({"version": "1"}))
    assert producer.flush(30) == 0
    consumer = k.consumer(settings, group_id=f"it-models-{unique}")
    consumer.assign([TopicPartition(settings.kafka.models_topic, 0, 0)])
    found = None
    deadline = time.monotonic() + 30
    try:
        while found is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error() and msg.key() == key.encode():
                found = k.decode(msg.value())
    finally:
        consumer.close()
    assert found == {"version": "1"}

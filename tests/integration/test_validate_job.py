"""The validation step on the real lake: S3 in, validated + quarantine out, counts reconcile, re-runs are idempotent."""

from __future__ import annotations

import datetime as dt

from batch import validate
from core import lake
from core.s3 import s3_client, split_uri
from workloads.taxi import generate

DAY = dt.date(2026, 11, 20)


def test_validate_partition_on_s3(spark, settings, unique):
    root = settings.s3.uri("it", unique)
    uris = generate.generate(settings, DAY, 1, 3000, seed=21, dirty_share=0.05, lake_root=root, echo=lambda _: None)
    bucket, key = split_uri(uris[0])
    before = s3_client(settings).head_object(Bucket=bucket, Key=key)

    first = validate.run(spark, settings, DAY, lake_root=root)
    assert first.ok and first.rows_in == 3000
    assert abs(first.quarantined - 150) <= 6
    assert set(first.by_rule) >= {"null_required_field", "outside_partition", "unknown_zone", "impossible_speed"}

    again = validate.run(spark, settings, DAY, lake_root=root)  # overwrite, never append
    assert again == first

    after = s3_client(settings).head_object(Bucket=bucket, Key=key)
    assert (after["ETag"], after["ContentLength"]) == (before["ETag"], before["ContentLength"])  # raw untouched

    quarantined = spark.read.parquet(lake.partition(root, "quarantine/trips", DAY))
    assert validate.REASON_COL in quarantined.columns
    assert quarantined.where(quarantined[validate.REASON_COL].isNull()).count() == 0


def test_preprocess_writes_time_splits_and_announces_them(spark, settings, unique):
    import time

    from batch import preprocess
    from core import kafka as k
    from core.events import BatchEvent, publish_batch_event

    root = settings.s3.uri("it", f"pre-{unique}")
    days = [DAY, DAY + dt.timedelta(days=1)]
    generate.generate(settings, DAY, 2, 1500, seed=3, lake_root=root, echo=lambda _: None)
    for d in days:
        validate.run(spark, settings, d, lake_root=root)
    result = preprocess.run(spark, settings, days, dataset=f"run-{unique}", lake_root=root)
    assert all(result.rows[s] > 0 for s in preprocess.SPLITS)
    again = preprocess.run(spark, settings, days, dataset=f"run-{unique}", lake_root=root)
    assert again.rows == result.rows  # overwritten, not appended

    event = BatchEvent(dag_id="it", run_id=unique, step="preprocess", status="success",
                       rows=sum(result.rows.values()), uri=result.uri)
    publish_batch_event(settings, event)
    consumer = k.consumer(settings, group_id=f"it-events-{unique}")
    consumer.subscribe([settings.kafka.batch_events_topic])
    found = None
    deadline = time.monotonic() + 30
    try:
        while found is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error() and msg.key() == event.key.encode():
                found = BatchEvent.model_validate_json(msg.value())
    finally:
        consumer.close()
    assert found is not None and found.rows == event.rows and found.uri == result.uri

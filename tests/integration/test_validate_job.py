"""The validation step on the real lake: S3 in, validated + quarantine out, counts reconcile, re-runs are idempotent."""

from __future__ import annotations

import datetime as dt

from batch import validate
from core.s3 import s3_client, split_uri
from workloads.taxi import WORKLOAD, generate

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

    quarantined = spark.read.parquet(WORKLOAD.partition(root, DAY, "quarantine"))
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


def test_the_bike_workload_validates_and_preprocesses_on_s3_from_its_declaration(spark, settings, unique):
    """The same steps, named the bike workload: its partitions (``start_date=``), its rules, its examples."""
    from batch import preprocess
    from core.workload import load
    from workloads.bike import generate as bike_generate
    from workloads.bike import schema

    bike = load("bike")
    root = settings.s3.uri("it", f"bike-{unique}")
    day = dt.date(2024, 6, 5)
    days = [day, day + dt.timedelta(days=1)]
    bike_generate.generate(settings, day, 2, 2000, seed=4, dirty_share=0.05, lake_root=root, echo=lambda _: None)
    results = [validate.run(spark, settings, d, lake_root=root, workload=bike) for d in days]
    for d, result in zip(days, results):
        assert result.ok and result.rows_in == 2000 and abs(result.quarantined - 100) <= 3
        assert set(result.by_rule) <= set(schema.RULE_NAMES) and len(result.by_rule) >= 5
        assert [o.uri for o in result.objects] and all(bike.partition_path(d) in o.uri for o in result.objects)
    assert validate.run(spark, settings, day, lake_root=root, workload=bike) == results[0]

    out = preprocess.run(spark, settings, days, dataset=f"bike-{unique}", lake_root=root, workload=bike)
    assert all(out.rows[s] > 0 for s in preprocess.SPLITS)
    assert sum(out.rows.values()) == sum(r.valid for r in results)
    assert out.feature_spec == bike.features.spec_version()
    train = spark.read.parquet(out.uri).where("split = 'train'")
    assert set(bike.features.FEATURE_NAMES) | {bike.label} <= set(train.columns)
    assert 0.03 < train.agg({bike.label: "avg"}).first()[0] < 0.25

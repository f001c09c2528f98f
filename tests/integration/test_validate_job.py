"""The validation step on the real lake: S3 in, validated + quarantine out, counts reconcile, re-runs are idempotent."""

from __future__ import annotations

import datetime as dt

from batch import generate, validate
from core import lake
from core.s3 import s3_client, split_uri

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

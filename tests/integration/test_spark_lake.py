"""Spark: reads Parquet from the S3 server over s3a://, writes a Hive table in the
shared metastore, and PyHive reads that table back through the Thrift Server (as the
read-only analyst: the platform's jobs write, the Thrift Server only reads)."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
from core import hive
from core.s3 import s3_client


def test_s3_parquet_to_hive_table_read_by_pyhive(spark, settings, unique):
    table = pa.table(
        {
            "trip_id": [f"t{i}" for i in range(100)],
            "PULocationID": [1 + i % 7 for i in range(100)],
            "trip_distance": [0.5 * i for i in range(100)],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    key = f"tests/{unique}/part-0.parquet"
    s3_client(settings).put_object(Bucket=settings.s3.bucket, Key=key, Body=buf.getvalue())

    df = spark.read.parquet(settings.s3.uri(f"tests/{unique}"))
    assert df.count() == 100

    db, name = settings.spark.hive_database, f"it_lake_{unique}"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    df.write.mode("overwrite").format("parquet").saveAsTable(f"{db}.{name}")

    conn = hive.connect(settings)
    try:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*), SUM(PULocationID), MAX(trip_distance) FROM {db}.{name}")
        count, zone_sum, max_distance = cur.fetchone()
        cur.execute(f"DESCRIBE FORMATTED {db}.{name}")
        location = [row for row in cur.fetchall() if row[0] and row[0].strip() == "Location"]
    finally:
        conn.close()
    assert count == 100
    assert zone_sum == sum(1 + i % 7 for i in range(100))
    assert max_distance == 49.5
    # The table lives in the lake on S3, not on a local disk.
    assert location and location[0][1].startswith(f"s3a://{settings.s3.bucket}/")

    spark.sql(f"DROP TABLE {db}.{name}")


def test_the_thrift_server_sees_what_spark_jobs_change(spark, settings, unique):
    """One metastore: rows a Spark job adds and a table it drops show through the Thrift Server."""
    db = settings.spark.hive_database
    name = f"{db}.it_shared_{unique}"
    spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    spark.sql(f"CREATE TABLE {name} (id INT, label STRING) USING parquet")
    spark.sql(f"INSERT INTO {name} VALUES (1, 'a'), (2, 'b')")

    def through_thrift(sql: str, refresh: bool = True) -> list[tuple]:
        conn = hive.connect(settings)
        try:
            cur = conn.cursor()
            if refresh:  # the Thrift Server caches file listings
                cur.execute(f"REFRESH TABLE {name}")
            cur.execute(sql)
            return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()

    assert sorted(through_thrift(f"SELECT * FROM {name}")) == [(1, "a"), (2, "b")]
    spark.sql(f"INSERT INTO {name} VALUES (3, 'c')")
    assert sorted(through_thrift(f"SELECT * FROM {name}")) == [(1, "a"), (2, "b"), (3, "c")]
    spark.sql(f"DROP TABLE {name}")
    assert f"it_shared_{unique}" not in {r[1] for r in through_thrift(f"SHOW TABLES IN {db}", refresh=False)}

"""Spark: reads Parquet from the S3 server over s3a://, writes a Hive table in the
shared metastore, and PyHive reads that table back through the Thrift Server."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
from pyhive import hive

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

    sp = settings.spark
    conn = hive.connect(host=sp.thrift_host, port=sp.thrift_port, auth="NONE", username="analyst")
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


def test_spark_sees_tables_created_through_thrift_server(spark, settings, unique):
    """One metastore: a table made via the Thrift Server is visible to a Spark job."""
    sp = settings.spark
    name = f"{sp.hive_database}.it_shared_{unique}"
    conn = hive.connect(host=sp.thrift_host, port=sp.thrift_port, auth="NONE", username="lambdaml")
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE TABLE {name} (id INT, label STRING) USING parquet")
        cur.execute(f"INSERT INTO {name} VALUES (1, 'a'), (2, 'b')")
    finally:
        conn.close()
    spark.catalog.refreshTable(name)
    rows = sorted(tuple(r) for r in spark.table(name).collect())
    assert rows == [(1, "a"), (2, "b")]
    spark.sql(f"DROP TABLE {name}")

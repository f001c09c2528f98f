"""The NYC TLC yellow-trip record: the raw schema the platform ingests unchanged.

Column names and types follow the TLC's monthly Parquet files. Real files
differ from month to month (``airport_fee`` vs ``Airport_fee``, int64 vs
double for ``passenger_count``/``RatecodeID``, extra columns such as
``cbd_congestion_fee``); ``normalize`` maps any of them onto ``RAW_SCHEMA``.
"""

from __future__ import annotations

import pyarrow as pa

RAW_SCHEMA = pa.schema(
    [
        ("VendorID", pa.int32()),
        ("tpep_pickup_datetime", pa.timestamp("us")),
        ("tpep_dropoff_datetime", pa.timestamp("us")),
        ("passenger_count", pa.int64()),
        ("trip_distance", pa.float64()),
        ("RatecodeID", pa.int64()),
        ("store_and_fwd_flag", pa.string()),
        ("PULocationID", pa.int32()),
        ("DOLocationID", pa.int32()),
        ("payment_type", pa.int64()),
        ("fare_amount", pa.float64()),
        ("extra", pa.float64()),
        ("mta_tax", pa.float64()),
        ("tip_amount", pa.float64()),
        ("tolls_amount", pa.float64()),
        ("improvement_surcharge", pa.float64()),
        ("total_amount", pa.float64()),
        ("congestion_surcharge", pa.float64()),
        ("Airport_fee", pa.float64()),
    ]
)

PICKUP, DROPOFF = "tpep_pickup_datetime", "tpep_dropoff_datetime"

# Spellings seen in real files, mapped to the canonical name.
COLUMN_ALIASES = {"airport_fee": "Airport_fee"}


REQUIRED = (PICKUP, DROPOFF, "PULocationID", "DOLocationID", "trip_distance")


def check_required(columns) -> None:
    missing = sorted(set(REQUIRED) - set(columns))
    if missing:
        raise ValueError(f"not a TLC yellow-trip file: missing column(s) {', '.join(missing)}")


def normalize(table: pa.Table) -> pa.Table:
    """Rename known aliases, cast to ``RAW_SCHEMA`` and add missing optional columns as nulls.

    Raises ``ValueError`` naming the columns when a required one is absent.
    """
    renamed = [COLUMN_ALIASES.get(name, name) for name in table.column_names]
    table = table.rename_columns(renamed)
    check_required(table.column_names)
    columns = []
    for field in RAW_SCHEMA:
        if field.name in table.column_names:
            col = table.column(field.name)
            if pa.types.is_timestamp(col.type) and col.type.tz is not None:
                col = col.cast(pa.timestamp(col.type.unit))
            columns.append(col.cast(field.type, safe=False))
        else:
            columns.append(pa.nulls(len(table), field.type))
    return pa.Table.from_arrays(columns, schema=RAW_SCHEMA)


def normalize_spark(df):
    """Spark form of ``normalize``: aliases renamed, canonical types, missing columns as nulls."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import (DoubleType, IntegerType, LongType, StringType, TimestampNTZType)

    spark_types = {pa.int32(): IntegerType(), pa.int64(): LongType(), pa.float64(): DoubleType(),
                   pa.string(): StringType(), pa.timestamp("us"): TimestampNTZType()}
    for alias, canonical in COLUMN_ALIASES.items():
        if alias in df.columns and canonical not in df.columns:
            df = df.withColumnRenamed(alias, canonical)
    check_required(df.columns)
    cols = []
    for field in RAW_SCHEMA:
        typ = spark_types[field.type]
        col = F.col(field.name) if field.name in df.columns else F.lit(None)
        # try_cast: a value of the wrong type ("Midtown" as a zone) becomes null, and validation quarantines
        # the row (null_required_field) instead of failing the whole partition.
        cols.append(col.try_cast(typ).alias(field.name))
    return df.select(*cols)


def read_partition_spark(spark, settings, uri: str):
    """One raw partition as a normalised DataFrame, whatever mix of file schemas it holds.

    Real TLC files differ from month to month (``airport_fee`` or ``Airport_fee``,
    int64 or double counts), and late data may arrive in another variant than the
    files already there. Spark infers one schema per read, so files are grouped by
    their own Parquet schema, each group normalised, and the groups unioned.
    """
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from core import lake

    fs, path = lake.filesystem(settings, uri)
    infos = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
             if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")]
    if not infos:
        raise FileNotFoundError(f"no raw data for this day: no Parquet files under {uri}. Load the day's TLC files "
                                "there (or `lambdaml generate` test data), or run batch_training with an end_date "
                                "and days_back that cover days with data.")
    groups: dict[str, list[str]] = {}
    for info in sorted(infos, key=lambda i: i.path):
        file_uri = f"{uri.rstrip('/')}/{info.path[len(path.rstrip('/')) + 1:]}"
        try:
            with fs.open_input_file(info.path) as f:
                schema = pq.read_schema(f)
        except pa.ArrowInvalid as exc:
            raise ValueError(f"{file_uri}: not a Parquet file ({exc}). Raw data is never rewritten here: move the "
                             "file out of the partition or replace it with a readable copy, then run again.") from None
        key = ",".join(f"{fld.name}:{fld.type}" for fld in schema)
        groups.setdefault(key, []).append(file_uri)
    frames = []
    for files in groups.values():
        try:
            frames.append(normalize_spark(spark.read.parquet(*files)))
        except ValueError as exc:  # a required column is missing: name the files
            raise ValueError(f"{', '.join(files)}: {exc}") from None
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out

"""A workload's raw partitions in the lake, read whatever the workload: the files listed and checked, then read
into Spark in the workload's one schema.

Nothing here knows a field: the schema, its aliases and its required columns come from the ``Workload``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:
    from core.workload import Workload

# Written by ``lambdaml ingest`` into each raw file's Parquet metadata: where the rows came from.
SOURCE_NAME_KEY, SOURCE_SHA256_KEY = b"lambdaml.source_name", b"lambdaml.source_sha256"


def normalize_spark(df, workload: "Workload"):
    """Spark form of the workload's ``normalize``: aliases renamed, canonical types, missing columns as nulls."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, IntegerType, LongType, StringType, TimestampNTZType

    spark_types = {pa.int32(): IntegerType(), pa.int64(): LongType(), pa.float64(): DoubleType(),
                   pa.string(): StringType(), pa.timestamp("us"): TimestampNTZType()}
    for alias, canonical in workload.aliases.items():
        if alias in df.columns and canonical not in df.columns:
            df = df.withColumnRenamed(alias, canonical)
    workload.check_required(df.columns)
    cols = []
    for field in workload.schema:
        typ = spark_types[field.type]
        col = F.col(field.name) if field.name in df.columns else F.lit(None)
        # try_cast: a value of the wrong type (a zone "Midtown") becomes null, and validation quarantines
        # the row (null_required_field) instead of failing the whole partition.
        cols.append(col.try_cast(typ).alias(field.name))
    return df.select(*cols)


@dataclass(frozen=True)
class RawObject:
    """One file of a raw partition: what a model version records it trained on."""

    uri: str
    bytes: int
    sha256: str
    schema_key: str  # the file's own Parquet schema, for grouping files that Spark can read together
    source_name: str | None = None  # set by ``lambdaml ingest`` in the file's metadata
    source_sha256: str | None = None

    def record(self) -> dict:
        out = {"uri": self.uri, "bytes": self.bytes, "sha256": self.sha256}
        if self.source_sha256:
            out["source"] = {"name": self.source_name, "sha256": self.source_sha256}
        return out


def move_aside_hint(uri: str) -> str:
    return (f"Raw data is never rewritten by the platform: move the file aside with `lambdaml move-aside {uri}` "
            "(it goes to the same path under rejected/), load a good copy with `lambdaml ingest`, then run again.")


def partition_objects(settings, uri: str) -> list[RawObject]:
    """Every file of one raw partition, read and checked: a checksum, a size and the Parquet schema of each.

    Raises ``core.lake.NoRawData`` when the partition holds no Parquet file, and ``core.lake.DataError``
    naming the file and the command that moves it aside when a file is not Parquet (a CSV copied in by
    hand, a stray file) or cannot be read: nothing in a partition is ignored silently.
    """
    import hashlib

    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from core import lake

    fs, path = lake.filesystem(settings, uri)
    infos = sorted((i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
                    if i.type == pafs.FileType.File), key=lambda i: i.path)

    def uri_of(info) -> str:
        return f"{uri.rstrip('/')}/{info.path[len(path.rstrip('/')) + 1:]}"

    stray = [uri_of(i) for i in infos if not i.base_name.endswith(".parquet")]
    if stray:
        raise lake.DataError(
            f"{', '.join(stray)}: not Parquet: a raw partition holds only the Parquet files `lambdaml ingest` "
            f"(or `lambdaml generate`) writes. Ingest a CSV with `lambdaml ingest <file>`. "
            + move_aside_hint(stray[0]))
    if not infos:
        raise lake.NoRawData(f"no raw data for this day: no Parquet files under {uri}. Load the day's TLC files "
                             "with `lambdaml ingest` (or `lambdaml generate` test data), or run batch_training with "
                             "an end_date and days_back (or start_date) that cover days with data.")
    out = []
    for info in infos:
        file_uri = uri_of(info)
        with fs.open_input_stream(info.path, compression=None) as f:
            data = f.read()
        try:
            schema = pq.read_schema(pa.BufferReader(data))
            pq.ParquetFile(pa.BufferReader(data)).metadata  # noqa: B018 - the footer must parse too
        except (pa.ArrowException, OSError) as exc:
            raise lake.DataError(f"{file_uri}: not a readable Parquet file ({exc}). " + move_aside_hint(file_uri)) \
                from None
        meta = schema.metadata or {}
        out.append(RawObject(
            uri=file_uri, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
            schema_key=",".join(f"{fld.name}:{fld.type}" for fld in schema),
            source_name=meta[SOURCE_NAME_KEY].decode() if SOURCE_NAME_KEY in meta else None,
            source_sha256=meta[SOURCE_SHA256_KEY].decode() if SOURCE_SHA256_KEY in meta else None))
    return out


def read_partition_spark(spark, settings, uri: str, workload: "Workload",
                         objects: list[RawObject] | None = None):
    """One raw partition as a normalised DataFrame, whatever mix of file schemas it holds.

    Real files differ from month to month (a column renamed, a count stored as int64
    or double; the workload's aliases and schema say how), and late data may arrive in
    another variant than the files already there. Spark infers one schema per read, so files are grouped by
    their own Parquet schema, each group normalised, and the groups unioned.
    ``objects``: the partition's files as ``partition_objects`` found them (listed again if not given).
    """
    from core import lake

    objects = partition_objects(settings, uri) if objects is None else objects
    groups: dict[str, list[str]] = {}
    for obj in objects:
        groups.setdefault(obj.schema_key, []).append(obj.uri)
    frames = []
    for files in groups.values():
        try:
            frames.append(normalize_spark(spark.read.parquet(*files), workload))
        except ValueError as exc:  # a required column is missing: name the files
            raise lake.DataError(f"{', '.join(files)}: {exc}. " + move_aside_hint(files[0])) from None
    out = frames[0]
    for frame in frames[1:]:
        out = out.unionByName(frame)
    return out

"""Preprocessing wall time: Spark against DuckDB running the same SQL on the same Parquet.

Three lines, each end to end (read the raw Parquet, compute, write Parquet):

- ``spark_sql``:        ``spark.sql(feature_sql(...))`` over a temp view, local[2], 2 GiB driver;
- ``duckdb_sql``:       DuckDB running the same text over ``read_parquet``, 2 threads, 2 GiB;
- ``spark_transform``:  the platform's own job, ``batch.preprocess.transform`` (all features, Column functions);
- ``spark_copy``:       Spark reading the raw Parquet and writing it back unchanged, in the same session: the floor
  of any Spark job here (no feature, no split), to read the ratio against;
- ``spark_transform_nowrite`` and ``spark_copy_nowrite``: the same two into Spark's ``noop`` sink, which runs every
  row through the plan and writes nothing. The difference to their writing lines is Spark's Parquet writer.

The outputs are checked against each other (row counts, split counts, column sums) before
anything is reported, so a query that computes something else cannot produce a number.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from batch import preprocess
from bench import common, data
from workloads.taxi import WORKLOAD, features, zones

if TYPE_CHECKING:
    import duckdb
    from pyspark.sql import SparkSession

NAME = "preprocess_engines"
TARGET = 3.0  # the platform's Spark transform at most this many times DuckDB's time on the same SQL
SOURCE = "trips"
CHECKED_SUMS = ("duration_s", "hour_of_week", "pu_do_cross", "log_distance", "passengers")
SQL_FEATURES = ("pu_zone", "do_zone", "hour", "dow", "hour_of_week", "pu_do_cross", "log_distance", "passengers",
                "is_airport", "is_weekend")


def _epoch_day(ts: str) -> str:
    """Days since 1970-01-01 from year and day of year (Gregorian), in functions both engines share."""
    y = f"year({ts})"
    return (f"CAST(365 * ({y} - 1970) + floor(({y} - 1969) / 4) - floor(({y} - 1901) / 100)"
            f" + floor(({y} - 1601) / 400) + dayofyear({ts}) - 1 AS BIGINT)")


def _second_of_day(ts: str) -> str:
    return f"(hour({ts}) * 3600 + minute({ts}) * 60 + second({ts}))"


def _zone(col: str) -> str:
    return f"CASE WHEN {col} BETWEEN 1 AND 263 THEN CAST({col} AS INT) ELSE 0 END"


def _epoch(moment: dt.datetime) -> int:
    return int(moment.replace(tzinfo=dt.UTC).timestamp())


def feature_sql(train_end: dt.datetime, val_end: dt.datetime, source: str = SOURCE) -> str:
    """Request columns, label, the features in ``SQL_FEATURES`` and the time split, as one SELECT.

    Only functions with the same meaning in Spark SQL and DuckDB are used: the engines number
    weekdays differently, share no epoch function and round differently in ``CAST(2.5 AS INT)``,
    so the day of week, the label and the split come from an epoch day computed from
    ``year``/``dayofyear``; the day of week is then (days since 1970-01-01 + 3) mod 7, Monday = 0,
    as ``workloads.taxi.features`` defines it.
    """
    pickup, dropoff = "tpep_pickup_datetime", "tpep_dropoff_datetime"
    airports = ", ".join(str(z) for z in zones.AIRPORT_ZONES)
    return f"""
WITH epoch AS (
  SELECT *,
    {_epoch_day(pickup)} AS pickup_day,
    {_epoch_day(dropoff)} AS dropoff_day
  FROM {source}
), base AS (
  SELECT
    {pickup} AS pickup_ts,
    CAST(PULocationID AS DOUBLE) AS PULocationID,
    CAST(DOLocationID AS DOUBLE) AS DOLocationID,
    CAST(passenger_count AS DOUBLE) AS passenger_count,
    CAST(trip_distance AS DOUBLE) AS trip_distance,
    CAST(VendorID AS DOUBLE) AS VendorID,
    CAST((dropoff_day - pickup_day) * 86400 + {_second_of_day(dropoff)} - {_second_of_day(pickup)} AS DOUBLE)
      AS duration_s,
    pickup_day * 86400 + {_second_of_day(pickup)} AS pickup_epoch_s,
    CAST(hour({pickup}) AS INT) AS hour,
    CAST((pickup_day + 3) % 7 AS INT) AS dow,
    {_zone("PULocationID")} AS pu_zone,
    {_zone("DOLocationID")} AS do_zone
  FROM epoch
)
SELECT
  pickup_ts, PULocationID, DOLocationID, passenger_count, trip_distance, VendorID, duration_s,
  pu_zone,
  do_zone,
  hour,
  dow,
  CAST(dow * 24 + hour AS INT) AS hour_of_week,
  CAST((pu_zone * {features.N_ZONE_SLOTS} + do_zone) % {features.CROSS_BUCKETS} AS INT) AS pu_do_cross,
  ln(1 + least(greatest(coalesce(trip_distance, 0.0), 0.0), {features.MAX_DISTANCE_MILES})) AS log_distance,
  least(greatest(coalesce(passenger_count, 1.0), 1.0), 6.0) AS passengers,
  CAST(CASE WHEN pu_zone IN ({airports}) OR do_zone IN ({airports}) THEN 1 ELSE 0 END AS DOUBLE) AS is_airport,
  CAST(CASE WHEN dow >= 5 THEN 1 ELSE 0 END AS DOUBLE) AS is_weekend,
  CASE WHEN pickup_epoch_s < {_epoch(train_end)} THEN 'train'
       WHEN pickup_epoch_s < {_epoch(val_end)} THEN 'val'
       ELSE 'test' END AS split
FROM base
"""


def spark_session() -> SparkSession:
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("lambdaml-bench")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def duckdb_connection() -> duckdb.DuckDBPyConnection:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.execute("SET memory_limit = '2GB'")
    con.execute("SET TimeZone = 'UTC'")
    return con


@dataclass(frozen=True)
class OutputSummary:
    rows: int
    splits: dict[str, int]
    sums: dict[str, float]

    def check_same(self, other: OutputSummary, label: str) -> None:
        """Fail unless ``other`` agrees: counts exactly, column sums to 1e-9 relative."""
        if (other.rows, other.splits) != (self.rows, self.splits):
            raise AssertionError(f"{label}: rows {other.rows} {other.splits} != {self.rows} {self.splits}")
        for column, expected in self.sums.items():
            if abs(other.sums[column] - expected) > 1e-9 * max(abs(expected), 1.0):
                raise AssertionError(f"{label}: sum({column}) {other.sums[column]!r} != {expected!r}")


def summarize(con: duckdb.DuckDBPyConnection, output: Path) -> OutputSummary:
    """Row count, rows per split and the checked column sums of a written Parquet folder."""
    files = f"read_parquet('{output}/*.parquet')"
    sums = ", ".join(f"sum({c})" for c in CHECKED_SUMS)
    row = con.execute(f"SELECT count(*), {sums} FROM {files}").fetchone()
    splits = dict(con.execute(f"SELECT split, count(*) FROM {files} GROUP BY split").fetchall())
    return OutputSummary(rows=row[0], splits=splits, sums={c: float(v) for c, v in zip(CHECKED_SUMS, row[1:])})


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    rows: Annotated[int, typer.Option(help="Raw trips to generate (cached under ~/.cache/lambdaml/bench).")]
    = 2_000_000,
    repeats: Annotated[int, typer.Option(help="Timed rounds (each runs every line); medians are reported.")] = 3,
    warmup: Annotated[int, typer.Option(help="Untimed rounds before the timed ones.")] = 1,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 7,
    out: Annotated[Path | None, typer.Option(help=common.OUT_HELP)] = None,
) -> None:
    """Time Spark SQL, DuckDB SQL and the platform's Spark transform over the same raw Parquet."""
    raw = data.raw_trips(rows, seed, echo=typer.echo)
    # Fixed cut points at 70% and 85% of the covered days: every engine cuts at the same times.
    start = dt.datetime.combine(data.days()[0], dt.time())
    span = dt.datetime.combine(data.days()[-1] + dt.timedelta(days=1), dt.time()) - start
    train_end, val_end = start + span * 0.7, start + span * 0.85
    sql = feature_sql(train_end, val_end)
    con = duckdb_connection()
    con.execute(f"CREATE VIEW {SOURCE} AS SELECT * FROM read_parquet('{raw}/*.parquet')")
    typer.echo("starting Spark (local[2], 2g driver)")
    spark = spark_session()
    try:
        with tempfile.TemporaryDirectory(prefix="lambdaml-bench-") as tmp:
            outputs = {name: Path(tmp) / name for name in ("spark_sql", "duckdb_sql", "spark_transform",
                                                           "spark_copy")}

            def spark_sql() -> None:
                spark.read.parquet(str(raw)).createOrReplaceTempView(SOURCE)
                spark.sql(sql).write.parquet(str(outputs["spark_sql"]))

            def duckdb_sql() -> None:
                con.execute(f"COPY ({sql}) TO '{outputs['duckdb_sql']}' "
                            "(FORMAT parquet, COMPRESSION snappy, PER_THREAD_OUTPUT)")

            def transformed():
                return preprocess.transform(WORKLOAD.examples(spark.read.parquet(str(raw))), train_end, val_end,
                                            WORKLOAD)

            def spark_transform() -> None:
                transformed().write.parquet(str(outputs["spark_transform"]))

            def spark_copy() -> None:
                spark.read.parquet(str(raw)).write.parquet(str(outputs["spark_copy"]))

            def spark_transform_nowrite() -> None:
                transformed().write.format("noop").mode("overwrite").save()

            def spark_copy_nowrite() -> None:
                spark.read.parquet(str(raw)).write.format("noop").mode("overwrite").save()

            runs = {"spark_sql": spark_sql, "duckdb_sql": duckdb_sql, "spark_transform": spark_transform,
                    "spark_copy": spark_copy, "spark_transform_nowrite": spark_transform_nowrite,
                    "spark_copy_nowrite": spark_copy_nowrite}
            typer.echo(f"{warmup} warm-up + {repeats} timed rounds, each runs {', '.join(runs)}")
            seconds = common.timed_rounds(runs, warmup, repeats,
                                          before=lambda name: name in outputs and shutil.rmtree(
                                              outputs[name], ignore_errors=True),
                                          echo=typer.echo)
            typer.echo("checking that the outputs agree")
            results = {name: summarize(con, path) for name, path in outputs.items() if name != "spark_copy"}
            copies = f"read_parquet('{outputs['spark_copy']}/*.parquet')"
            copied = con.execute(f"SELECT count(*) FROM {copies}").fetchone()[0]
    finally:
        spark.stop()

    reference = results["duckdb_sql"]
    if reference.rows != rows:
        raise AssertionError(f"duckdb_sql wrote {reference.rows} rows, expected {rows}")
    reference.check_same(results["spark_sql"], "spark_sql vs duckdb_sql")
    reference.check_same(results["spark_transform"], "spark_transform vs duckdb_sql")
    if copied != rows:
        raise AssertionError(f"spark_copy wrote {copied} rows, expected {rows}")

    measurements = {
        name: {"median_s": round(common.median(s), 3), "runs_s": [round(x, 3) for x in s],
               "rows_per_s": round(rows / common.median(s))}
        for name, s in seconds.items()
    }
    medians = {name: common.median(s) for name, s in seconds.items()}
    writer_s = medians["spark_transform"] - medians["spark_transform_nowrite"]  # Spark's Parquet writer alone
    common.write_result(
        NAME,
        parameters={"rows": rows, "repeats": repeats, "warmup": warmup, "seed": seed, "days": data.DAYS,
                    "input_files": len(list(raw.glob("*.parquet"))), "spark_master": "local[2]",
                    "spark_driver_memory": "2g", "duckdb_threads": 2, "duckdb_memory_limit": "2GB",
                    "sql_features": list(SQL_FEATURES), "transform_features": list(features.FEATURE_NAMES),
                    "checked": {"rows": rows, "splits": reference.splits}},
        measurements=measurements,
        ratios={"spark_sql_s/duckdb_sql_s": medians["spark_sql"] / medians["duckdb_sql"],
                "spark_transform_s/duckdb_sql_s": medians["spark_transform"] / medians["duckdb_sql"],
                "spark_transform_s/spark_sql_s": medians["spark_transform"] / medians["spark_sql"],
                "spark_copy_s/duckdb_sql_s": medians["spark_copy"] / medians["duckdb_sql"],
                "spark_transform_nowrite_s/duckdb_sql_s": medians["spark_transform_nowrite"] / medians["duckdb_sql"],
                "spark_parquet_write_s/duckdb_sql_s": writer_s / medians["duckdb_sql"]},
        echo=typer.echo,
        summary=[common.comparison("spark_transform", medians["spark_transform"], "duckdb_sql",
                                   medians["duckdb_sql"], "s", higher_is_better=False,
                                   target=f"ratio <= {TARGET:g}",
                                   met=medians["spark_transform"] <= TARGET * medians["duckdb_sql"]),
                 common.comparison("spark_sql", medians["spark_sql"], "duckdb_sql", medians["duckdb_sql"], "s",
                                   higher_is_better=False),
                 common.comparison("spark_copy (Spark's floor: read, write back)", medians["spark_copy"],
                                   "duckdb_sql", medians["duckdb_sql"], "s", higher_is_better=False),
                 common.comparison("spark_transform_nowrite (read and features into the noop sink)",
                                   medians["spark_transform_nowrite"], "duckdb_sql", medians["duckdb_sql"], "s",
                                   higher_is_better=False),
                 common.comparison("Spark's Parquet writer alone (spark_transform - spark_transform_nowrite)",
                                   writer_s, "duckdb_sql", medians["duckdb_sql"], "s", higher_is_better=False)],
        out=out,
    )


if __name__ == "__main__":
    app()

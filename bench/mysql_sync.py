"""Rows per second into MySQL: the serving sync's bulk upsert against LOAD DATA and against row-by-row inserts.

All three write the same prediction rows (parsed from ``trips.predictions`` messages by the sync's own parser)
into a scratch table created ``LIKE predictions_recent`` (same columns and indexes) and dropped at the end:

- ``bulk_upsert``: ``serving.sync.bulk_upsert`` with the sync's statement, one transaction per chunk of
  ``serving.sync.CHUNK_MESSAGES`` rows, as a sync run writes them;
- ``load_data``: the rows written to a CSV file, then ``LOAD DATA LOCAL INFILE`` in one transaction (the CSV
  writing is timed too: the rows start as Python tuples in both cases; it is also reported on its own);
- ``single_row``: the same upsert statement executed once per row with a commit per row (fewer rows).

Before each timed call the table is emptied and given one row, so that no method gets MariaDB's
empty-table bulk-insert path that the live ``predictions_recent`` never sees.

Run: ``python -m bench.mysql_sync`` (the local stack's MariaDB must be up). Writes bench/results/mysql_sync.json.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from bench import common
from core import kafka
from core.settings import Settings, get_settings
from core.views import RealTimeViews
from core.workload import load
from serving import sync

NAME = "mysql_sync"
SCRATCH = "bench_predictions_recent"
CREATE = "CREATE TABLE bench_predictions_recent LIKE predictions_recent"
DROP = "DROP TABLE IF EXISTS bench_predictions_recent"
TRUNCATE = "TRUNCATE TABLE bench_predictions_recent"
TAXI = load("taxi")
VIEWS = RealTimeViews(TAXI)
LOAD_DATA = (
    "LOAD DATA LOCAL INFILE %s INTO TABLE bench_predictions_recent CHARACTER SET utf8mb4"
    " FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\n'"
    f" ({', '.join(c.name for c in VIEWS.prediction_columns)})"
)
FIRST_PICKUP = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def prediction_rows(n: int, seed: int, prefix: str = "bench-") -> list[tuple]:
    """``n`` prediction messages as the stream writes them, turned into rows by the sync's parser."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pickup = FIRST_PICKUP + dt.timedelta(seconds=rng.randrange(7 * 86400), milliseconds=rng.randrange(1000))
        message = {"schema_version": 1, "trip_id": f"{prefix}{i:09d}",
                   "model_version": "trip_duration:1.0.0-20261123T1015-abcdef0",
                   "predicted_duration_s": round(rng.uniform(60, 3600), 3), "event_ts": pickup.isoformat(),
                   "scored_ts": (pickup + dt.timedelta(milliseconds=rng.randrange(50, 900))).isoformat(),
                   "pickup_ts": pickup.isoformat(), "PULocationID": rng.randint(1, 265),
                   "DOLocationID": rng.randint(1, 265), "passenger_count": rng.choice([None, 1, 1, 2, 3]),
                   "trip_distance": round(rng.uniform(0.1, 30), 2)}
        rows.append(sync.parse_prediction(kafka.encode(message), TAXI, VIEWS).values)
    return rows


def write_csv(rows: list[tuple], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        for row in rows:
            writer.writerow([r"\N" if v is None else v.isoformat(" ", "milliseconds") if isinstance(v, dt.datetime)
                             else v for v in row])


class Scratch:
    """One connection (LOCAL INFILE allowed) and the scratch table."""

    def __init__(self, settings: Settings):
        from sqlalchemy import create_engine

        self.engine = create_engine(settings.mysql.sqlalchemy_url(),
                                    connect_args={"local_infile": True, "connect_timeout": 5})
        self.conn = self.engine.raw_connection()
        self.cursor = self.conn.cursor()
        self.cursor.execute("SELECT @@local_infile")
        if not self.cursor.fetchone()[0]:
            raise typer.BadParameter("the server has local_infile=OFF; start mariadbd with --local-infile=1")
        upsert = VIEWS.statement("sync_upsert_predictions")
        self.upsert = upsert.replace("INTO predictions_recent", f"INTO {SCRATCH}", 1)
        if self.upsert == upsert:
            raise RuntimeError("the sync's upsert statement no longer names predictions_recent")
        self.cursor.execute(DROP)
        self.cursor.execute(CREATE)

    def reset(self, seed_row: tuple) -> None:
        self.cursor.execute(TRUNCATE)
        sync.bulk_upsert(self.cursor, self.upsert, [("seed", *seed_row[1:])])
        self.conn.commit()

    def count(self) -> int:
        self.cursor.execute("SELECT COUNT(*) FROM bench_predictions_recent")
        return int(self.cursor.fetchone()[0])

    def close(self) -> None:
        self.cursor.execute(DROP)
        self.cursor.close()
        self.conn.close()
        self.engine.dispose()


app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    rows: Annotated[int, typer.Option(help="Rows for bulk_upsert and load_data.")] = 50_000,
    single_rows: Annotated[int, typer.Option(help="Rows for single_row (a commit per row).")] = 2_000,
    repeats: Annotated[int, typer.Option(help="Timed runs of each path after one warm-up; the median is reported.")]
    = 3,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 7,
    out: Annotated[Path | None, typer.Option(help=common.OUT_HELP)] = None,
) -> None:
    """Compare rows/s of the sync's bulk upsert, LOAD DATA LOCAL INFILE and single-row inserts on the real MariaDB."""
    data = prediction_rows(rows, seed)
    single = data[:single_rows]
    scratch = Scratch(get_settings())
    csv_seconds: list[float] = []
    tmp = tempfile.TemporaryDirectory(prefix="bench-mysql-sync-")
    csv_path = Path(tmp.name) / "rows.csv"

    def bulk_upsert() -> None:
        for start in range(0, len(data), sync.CHUNK_MESSAGES):
            sync.bulk_upsert(scratch.cursor, scratch.upsert, data[start:start + sync.CHUNK_MESSAGES])
            scratch.conn.commit()

    def load_data() -> None:
        t0 = time.perf_counter()
        write_csv(data, csv_path)
        csv_seconds.append(time.perf_counter() - t0)
        scratch.cursor.execute(LOAD_DATA, (str(csv_path),))
        scratch.conn.commit()

    def single_row() -> None:
        for row in single:
            scratch.cursor.execute(scratch.upsert, row)
            scratch.conn.commit()

    runs = {"bulk_upsert": bulk_upsert, "load_data": load_data, "single_row": single_row}
    expected = {"bulk_upsert": len(data), "load_data": len(data), "single_row": len(single)}
    try:
        typer.echo(f"{rows:,} rows (single_row: {single_rows:,}) into {SCRATCH}; 1 warm-up, {repeats} timed")
        written: dict[str, int] = {}
        for name, run in runs.items():  # the warm-up: each path once, untimed, checking what it wrote
            scratch.reset(data[0])
            run()
            written[name] = scratch.count() - 1
        if written != expected:
            raise RuntimeError(f"rows written {written} != {expected}")
        seconds = common.timed_rounds(runs, warmup=0, repeats=repeats, before=lambda _: scratch.reset(data[0]),
                                      echo=typer.echo)
    finally:
        scratch.close()
        tmp.cleanup()

    median = {name: common.median(values) for name, values in seconds.items()}
    rate = {name: expected[name] / median[name] for name in runs}
    timed_csv = csv_seconds[-repeats:]
    load_only = len(data) / common.median([total - c for total, c in zip(seconds["load_data"], timed_csv)])
    measurements: dict[str, Any] = {
        name: {"rows": expected[name], "median_s": round(median[name], 3), "rows_per_s": round(rate[name], 1),
               "seconds": [round(s, 3) for s in seconds[name]]}
        for name in runs
    }
    measurements["load_data"]["csv_write_median_s"] = round(common.median(timed_csv), 3)
    measurements["load_data"]["rows_per_s_without_csv"] = round(load_only, 1)
    common.write_result(
        NAME,
        parameters={"rows": rows, "single_rows": single_rows, "repeats": repeats, "seed": seed,
                    "chunk_rows": sync.CHUNK_MESSAGES, "max_statement_bytes": sync.MAX_STATEMENT_BYTES,
                    "table": f"{SCRATCH} (LIKE predictions_recent)"},
        measurements=measurements,
        ratios={"bulk_over_load_data": rate["bulk_upsert"] / rate["load_data"],
                "bulk_over_load_data_without_csv": rate["bulk_upsert"] / load_only,
                "bulk_over_single_row": rate["bulk_upsert"] / rate["single_row"]},
        echo=typer.echo,
        summary=[common.comparison("bulk_upsert", rate["bulk_upsert"], "load_data", rate["load_data"], "rows/s",
                                   higher_is_better=True, target="ratio >= 0.65",
                                   met=rate["bulk_upsert"] / rate["load_data"] >= 0.65),
                 common.comparison("bulk_upsert", rate["bulk_upsert"], "single_row", rate["single_row"], "rows/s",
                                   higher_is_better=True, target="ratio >= 10",
                                   met=rate["bulk_upsert"] / rate["single_row"] >= 10)],
        out=out,
    )


if __name__ == "__main__":
    app()

"""Generated raw data into the lake, for any workload: the loop every workload's ``generate`` runs.

A workload's generator (``workloads/<name>/generate.py``) makes one day's rows (``generate_day``); writing them is
the same for all: one Parquet file per day in the day's raw partition, never overwriting one that exists (raw data
is immutable), with one line of progress per day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

    from core.workload import Workload


def write_day(settings, wl: Workload, table: pa.Table, day: dt.date, part: str,
              lake_root: str | None = None) -> tuple[str, bool]:
    """Write one file into the day's raw partition of ``wl``; an existing file is kept. Returns (uri, written_now)."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from core import lake

    uri = f"{wl.partition(lake.root(settings, lake_root), day)}/{part}.parquet"
    fs, path = lake.filesystem(settings, uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        return uri, False
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    pq.write_table(table, path, filesystem=fs, compression="zstd")
    return uri, True


def generate_days(settings, wl: Workload, generate_day: Callable[..., pa.Table], start: dt.date, days: int,
                  rows_per_day: int, seed: int = 7, dirty_share: float = 0.03, shift: bool = False,
                  lake_root: str | None = None, echo: Callable[[str], None] = print) -> list[str]:
    """``days`` daily files from ``start`` by ``generate_day(day, rows, seed=, dirty_share=, shift=)``; their URIs.
    A file's name says how it was made, so the same arguments find the file written before and keep it."""
    uris = []
    for i in range(days):
        day = start + dt.timedelta(days=i)
        table = generate_day(day, rows_per_day, seed=seed, dirty_share=dirty_share, shift=shift)
        part = f"part-seed{seed}{'-shift' if shift else ''}-{rows_per_day}"
        uri, written = write_day(settings, wl, table, day, part, lake_root)
        echo(f"  {day}  {rows_per_day:>8,} {wl.batch_key}  {'written' if written else 'exists, kept'}  {uri}")
        uris.append(uri)
    return uris

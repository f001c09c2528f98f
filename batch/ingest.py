"""Bring your own data: ``lambdaml ingest`` loads a workload's files into the raw layer, split by day.

One source file goes through, in order:

1. **read** its bytes (a local path or an ``s3://`` URI) and take their sha256. A file whose manifest is in the
   lake already is *already present*: nothing is written.
2. **refuse it at the door**, whole, when it is not a table (not Parquet, not UTF-8 CSV), is corrupt (a cut
   Parquet file, a broken gzip, a ragged CSV) or lacks a required column: an ``IngestError`` names the file and
   what is wrong, and nothing is written.
3. **normalise** it from whichever known variant it is (the workload's ``normalize``: for taxi,
   ``workloads.taxi.tlc`` knows the TLC's schema of each year, its renamed columns and its integer or double
   counts) onto the raw schema, and **split** it by the day of its event time. Rows dated outside the file's
   month go to their own day and are counted; rows without an event time go to the file's first day, where
   validation quarantines them (``null_required_field``).
4. **stage** one Parquet object per day under ``staging/ingest/``, then **commit**: copy each into
   ``raw/<dataset>/<date column>=YYYY-MM-DD/ingest-<sha256[:16]>.parquet`` (an existing object is never
   overwritten), write the JSON manifest (``manifests/ingest/<workload>/<sha256>.json``) and then its MySQL row
   (``ingest_manifest``), and delete the staging prefix.

The pure parts (variant, format sniffing, the day split, the plan of what to ingest) are apart from the I/O.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.lake import DataError
from core.workload import UnknownWorkload, Workload
from core.workload import load as load_workload

TABLE_SUFFIXES = (".parquet", ".parq", ".pq", ".csv", ".csv.gz", ".csv.gzip")
PARQUET_MAGIC, GZIP_MAGIC = b"PAR1", b"\x1f\x8b"
# CSV exports of the NYC open-data portal write 01/31/2018 11:59:59 PM; the TLC's own files ISO 8601.
CSV_TIMESTAMP_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M")


class IngestError(DataError):
    """A source file refused at the door; the message starts with its name."""


class IndexUnavailable(RuntimeError):
    """The file is in the lake with its manifest, but MySQL did not take its ``ingest_manifest`` row."""


def workload(name: str) -> Workload:
    """The workload ``--workload`` names (``core.workload.load``), or ``IngestError`` listing the known ones."""
    try:
        return load_workload(name)
    except UnknownWorkload as exc:
        raise IngestError(f"--workload {name}: no such workload (known: {', '.join(exc.known)})") from None


# ---------------------------------------------------------------------------------------------------------------------
# Pure: reading bytes into a table, refusing what is not one.

def sniff(name: str, data: bytes) -> str:
    """``parquet``, ``csv.gz`` or ``csv``: by the bytes first (a renamed file still reads), then by the name."""
    if not data:
        raise IngestError(f"{name}: empty file (0 bytes): not a table")
    if data[:4] == PARQUET_MAGIC:
        return "parquet"
    if data[:2] == GZIP_MAGIC:
        return "csv.gz"
    if name.lower().endswith((".parquet", ".parq", ".pq")):
        raise IngestError(f"{name}: corrupt Parquet file: it does not start with the Parquet magic bytes PAR1")
    return "csv"


def arrow_owned(data: bytes) -> pa.Buffer:
    """A copy of ``data`` in Arrow's own memory, for Arrow's threaded readers. Given Python ``bytes``, their
    worker threads may drop the last reference after the read returns, which takes the GIL; at interpreter exit
    a thread that asks for the GIL is ended inside C++ and the process aborts (exit -6, "terminate called without
    an active exception"). Freeing Arrow's memory needs no GIL."""
    out = pa.BufferOutputStream()
    out.write(data)
    return out.getvalue()


def read_table(name: str, data: bytes, wl: Workload) -> tuple[pa.Schema, pa.Table]:
    """(the file's own schema, its rows in the workload's raw schema), or ``IngestError`` naming the file and
    the problem."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    kind = sniff(name, data)
    if kind == "parquet":
        try:
            table = pq.read_table(pa.BufferReader(arrow_owned(data)))
        except (pa.ArrowException, OSError) as exc:
            raise IngestError(f"{name}: corrupt Parquet file ({exc})") from None
    else:
        if kind == "csv.gz":
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError) as exc:
                raise IngestError(f"{name}: corrupt gzip file ({exc})") from None
        header = data.split(b"\n", 1)[0]
        try:
            header.decode("utf-8")
        except UnicodeDecodeError:
            raise IngestError(f"{name}: not a table: neither Parquet nor CSV text (its first line is not "
                              "UTF-8)") from None
        try:
            table = pcsv.read_csv(
                pa.BufferReader(arrow_owned(data)),
                convert_options=pcsv.ConvertOptions(
                    column_types=wl.csv_types(), timestamp_parsers=[pcsv.ISO8601, *CSV_TIMESTAMP_FORMATS]))
        except (pa.ArrowException, UnicodeDecodeError) as exc:
            raise IngestError(f"{name}: not a table: not Parquet, and not readable as CSV ({exc})") from None
    try:
        wl.check_required(table.column_names)
    except ValueError as exc:
        raise IngestError(f"{name}: {exc} (it has: {', '.join(table.column_names[:12])}"
                          f"{', ...' if table.num_columns > 12 else ''})") from None
    if table.num_rows == 0:
        raise IngestError(f"{name}: the table holds no rows")
    try:
        return table.schema, wl.normalize(table)
    except (pa.ArrowException, ValueError) as exc:
        raise IngestError(f"{name}: a column does not convert to the raw schema ({exc})") from None


# ---------------------------------------------------------------------------------------------------------------------
# Pure: the day split.

@dataclass(frozen=True)
class DaySplit:
    parts: dict[dt.date, pa.Table]  # rows per day of event time, in file order within a day
    month: tuple[int, int]  # (year, month) holding most rows: the file's month
    outside_month: int  # rows dated outside that month (each went to its own day)
    no_event_time: int  # rows without an event time (they went to the file's first day)

    @property
    def rows(self) -> int:
        return sum(t.num_rows for t in self.parts.values())


def split_by_day(table: pa.Table, event_time: str, name: str = "the file") -> DaySplit:
    """Rows grouped by the calendar day of ``event_time`` (wall clock, as the TLC records it)."""
    days = pc.cast(table.column(event_time), pa.date32())
    valid = pc.drop_null(days)
    if len(valid) == 0:
        raise IngestError(f"{name}: no row has a {event_time}: nothing places its rows in a day")
    months = pc.add(pc.multiply(pc.year(valid), 100), pc.month(valid))
    counts = pc.value_counts(months)
    values, freq = counts.field("values").to_numpy(), counts.field("counts").to_numpy()
    best = int(values[np.lexsort((values, -freq))[0]])  # most rows; the earlier month on a tie
    month = (best // 100, best % 100)
    outside = int(pc.sum(pc.not_equal(months, best)).as_py() or 0)
    in_month = pc.filter(valid, pc.equal(months, best))
    home = pc.min(in_month)
    no_time = days.null_count
    key = pc.fill_null(days, home) if no_time else days
    order = pc.sort_indices(key)  # stable: file order is kept within a day
    keys = key.take(order).cast(pa.int32()).to_numpy(zero_copy_only=False)
    ordered = table.take(order)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(keys)) + 1])
    ends = np.concatenate([starts[1:], [len(keys)]])
    epoch = dt.date(1970, 1, 1)
    parts = {epoch + dt.timedelta(days=int(keys[a])): ordered.slice(a, b - a) for a, b in zip(starts, ends)}
    return DaySplit(parts=parts, month=month, outside_month=outside, no_event_time=no_time)


# ---------------------------------------------------------------------------------------------------------------------
# Pure: names in the lake and the plan.

def object_name(sha256: str) -> str:
    """The one object a source file writes into each day: named by its content, so a re-run finds it."""
    return f"ingest-{sha256[:16]}.parquet"



def manifest_uri(root: str, wl: Workload, sha256: str) -> str:
    return f"{root}/manifests/ingest/{wl.name}/{sha256}.json"


@dataclass(frozen=True)
class Decision:
    name: str
    sha256: str
    action: str  # "ingest" | "present" (its manifest is in the lake) | "repeated" (same bytes earlier in this run)
    same_as: str | None = None


def plan(files: Iterable[tuple[str, str]], present: set[str], seen: dict[str, str] | None = None) -> list[Decision]:
    """What to do with each (name, sha256): only bytes not ingested before, and each once. ``present``: the
    sha256s whose manifest is in the lake; ``seen``: sha256 -> name of files taken earlier in this run."""
    seen = dict(seen or {})
    out = []
    for name, sha in files:
        if sha in seen:
            out.append(Decision(name, sha, "repeated", same_as=seen[sha]))
        elif sha in present:
            out.append(Decision(name, sha, "present"))
        else:
            seen[sha] = name
            out.append(Decision(name, sha, "ingest"))
    return out


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------------------------
# I/O.

@dataclass
class FileResult:
    name: str
    sha256: str = ""
    variant: str = ""
    rows: int = 0
    days: int = 0
    outside_month: int = 0
    no_event_time: int = 0
    status: str = "ingested"  # ingested | present | repeated | refused
    seconds: float = 0.0
    error: str = ""
    objects: list[dict[str, Any]] = field(default_factory=list)
    manifest: str = ""

    @property
    def already_present(self) -> bool:
        return self.status in ("present", "repeated")


@dataclass(frozen=True)
class Source:
    name: str  # as given (a path or a URI), for messages
    uri: str  # what ``core.lake.filesystem`` opens


def expand(settings, args: Iterable[str]) -> tuple[list[Source], list[str]]:
    """The files behind each argument (a file, a folder, an ``s3://`` URI of either), and the files of folders
    skipped because their names are not tables (hidden ones, ``_SUCCESS``, a README)."""
    import pyarrow.fs as pafs

    from core import lake

    sources: list[Source] = []
    skipped: list[str] = []
    for arg in args:
        remote = "://" in arg
        uri = arg if remote else str(Path(arg).expanduser().resolve())
        fs, path = lake.filesystem(settings, uri)
        try:
            info = fs.get_file_info(path)
        except OSError as exc:
            raise IngestError(f"{arg}: cannot be reached ({exc})") from None
        if info.type == pafs.FileType.NotFound:
            raise IngestError(f"{arg}: no such file or folder")
        if info.type == pafs.FileType.File:
            sources.append(Source(arg, uri))
            continue
        found = sorted((i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                        if i.type == pafs.FileType.File), key=lambda i: i.path)
        base = uri.rstrip("/")
        for i in found:
            rel = i.path[len(path.rstrip("/")) + 1:]
            child = f"{base}/{rel}"
            shown = f"{arg.rstrip('/')}/{rel}"
            if any(part.startswith((".", "_")) for part in rel.split("/")) or \
                    not i.base_name.lower().endswith(TABLE_SUFFIXES):
                skipped.append(shown)
            else:
                sources.append(Source(shown, child))
    return sources, skipped


def _read(settings, source: Source) -> bytes:
    from core import lake

    fs, path = lake.filesystem(settings, source.uri)
    try:
        with fs.open_input_stream(path, compression=None) as f:
            return f.read()
    except OSError as exc:
        raise IngestError(f"{source.name}: cannot be read ({exc})") from None


def _exists(fs, path: str) -> bool:
    import pyarrow.fs as pafs

    return fs.get_file_info(path).type != pafs.FileType.NotFound


def _delete_tree(settings, fs, uri: str, path: str) -> None:
    """Delete everything under a prefix, best effort. On S3 by key (boto3): pyarrow's delete leaves an empty
    marker object for the parent "directory" behind."""
    import pyarrow.fs as pafs

    try:
        if isinstance(fs, pafs.LocalFileSystem):
            fs.delete_dir(path)
            return
        from core.s3 import s3_client, split_uri

        bucket, prefix = split_uri(uri)
        client = s3_client(settings)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    except (OSError, FileNotFoundError) as exc:  # left behind: harmless, never read; say so
        import logging

        logging.getLogger(__name__).warning("could not delete the staging prefix %s: %s", uri, exc)


def _make_parent(fs, path: str) -> None:
    """A local folder for ``path``; S3 needs none (and would get empty marker objects)."""
    import pyarrow.fs as pafs

    if isinstance(fs, pafs.LocalFileSystem):
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)


Progress = Callable[[str, int, int, str], None]  # (file name, steps done, steps in all, what now)


def ingest_file(settings, source: Source, wl: Workload, root: str, seen: dict[str, str],
                progress: Progress | None = None, record: Callable[[dict[str, Any]], None] | None = None) -> FileResult:
    """Ingest one file (see the module docstring); ``IngestError`` if it is refused. ``seen``: sha256 -> name of
    the files ingested earlier in this run; this one is added."""
    import pyarrow.parquet as pq

    from core import lake
    from core.raw import SOURCE_NAME_KEY, SOURCE_SHA256_KEY

    def step(done: int, total: int, what: str) -> None:
        if progress:
            progress(source.name, done, total, what)

    started = time.monotonic()
    result = FileResult(name=source.name)
    step(0, 3, "reading")
    data = _read(settings, source)
    result.sha256 = sha256_of(data)
    fs, _ = lake.filesystem(settings, root)
    man_uri = manifest_uri(root, wl, result.sha256)
    man_path = lake.filesystem(settings, man_uri)[1]
    decision = plan([(source.name, result.sha256)], {result.sha256} if _exists(fs, man_path) else set(), seen)[0]
    if decision.action == "repeated":
        result.status, result.error = "repeated", f"the same bytes as {decision.same_as}"
        result.seconds = time.monotonic() - started
        step(1, 1, "repeated")
        return result
    if decision.action == "present":
        manifest = json.loads(_read(settings, Source(man_uri, man_uri)))
        if record:
            record(manifest)  # the MySQL row, should an earlier run have stopped before it
        result.status, result.manifest = "present", man_uri
        result.rows, result.days, result.variant = manifest["rows"], len(manifest["objects"]), manifest["variant"]
        result.outside_month, result.no_event_time = manifest["rows_outside_month"], manifest["rows_no_event_time"]
        result.objects = manifest["objects"]
        result.seconds = time.monotonic() - started
        step(1, 1, "already present")
        return result
    step(1, 3, "checking")
    schema, table = read_table(source.name, data, wl)
    fmt = sniff(source.name, data)
    result.variant = wl.variant(schema) if fmt == "parquet" else f"{wl.variant(schema, counts=False)}, {fmt.upper()}"
    split = split_by_day(table, wl.event_time, source.name)
    del table
    result.rows, result.days = split.rows, len(split.parts)
    result.outside_month, result.no_event_time = split.outside_month, split.no_event_time
    total = 2 + 2 * len(split.parts) + 1
    staging = f"{root}/staging/ingest/{wl.name}/{result.sha256}-{uuid.uuid4().hex[:8]}"
    staging_path = lake.filesystem(settings, staging)[1]
    meta = {SOURCE_NAME_KEY: source.name.encode(), SOURCE_SHA256_KEY: result.sha256.encode(),
            b"lambdaml.workload": wl.name.encode()}
    staged: list[tuple[str, str, dict[str, Any]]] = []
    try:
        done = 2
        for day, part in sorted(split.parts.items()):
            buf = pa.BufferOutputStream()
            pq.write_table(part.replace_schema_metadata(meta), buf, compression="zstd")
            body = buf.getvalue().to_pybytes()
            final_uri = f"{wl.partition(root, day)}/{object_name(result.sha256)}"
            path = f"{staging_path}/{wl.partition_column}={day.isoformat()}/{object_name(result.sha256)}"
            _make_parent(fs, path)
            with fs.open_output_stream(path, compression=None) as out:
                out.write(body)
            staged.append((path, final_uri, {"uri": final_uri, "day": day.isoformat(), "rows": part.num_rows,
                                             "bytes": len(body), "sha256": sha256_of(body)}))
            done += 1
            step(done, total, f"staging {day}")
        # Commit: into place, never over an existing object (one left by an interrupted run has this content).
        for path, final_uri, obj in staged:
            final_path = lake.filesystem(settings, final_uri)[1]
            if _exists(fs, final_path):  # left by an interrupted run of these bytes: kept, and recorded as it is
                with fs.open_input_stream(final_path, compression=None) as f:
                    body = f.read()
                obj["bytes"], obj["sha256"] = len(body), sha256_of(body)
            else:
                _make_parent(fs, final_path)
                fs.copy_file(path, final_path)
            done += 1
            step(done, total, f"committing {obj['day']}")
        result.objects = [obj for _, _, obj in staged]
        manifest = {
            "workload": wl.name, "source_name": source.name, "sha256": result.sha256, "source_bytes": len(data),
            "variant": result.variant, "rows": result.rows, "month": f"{split.month[0]:04d}-{split.month[1]:02d}",
            "rows_outside_month": result.outside_month, "rows_no_event_time": result.no_event_time,
            "objects": result.objects, "ingested_at": dt.datetime.now(dt.UTC).isoformat(), "manifest_uri": man_uri,
        }
        _make_parent(fs, man_path)
        with fs.open_output_stream(man_path, compression=None) as out:
            out.write(json.dumps(manifest, indent=2).encode())
        if record:
            record(manifest)
    finally:
        _delete_tree(settings, fs, staging, staging_path)
    seen[result.sha256] = source.name
    result.manifest = man_uri
    result.seconds = time.monotonic() - started
    step(total, total, "done")
    return result


def mysql_recorder(settings) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    """(record, close): ``record(manifest)`` inserts its ``ingest_manifest`` row unless it is there."""
    from sqlalchemy import text

    from core.db import engine, load_sql

    eng = engine(settings)

    def record(m: dict[str, Any]) -> None:
        from sqlalchemy.exc import OperationalError

        try:
            _insert(m)
        except OperationalError as exc:
            raise IndexUnavailable(
                f"{m['source_name']}: its objects and manifest are in the lake ({m['manifest_uri']}), but MySQL did "
                f"not take its ingest_manifest row ({exc.orig}). Run the same command again once MySQL is back: "
                "nothing is written twice, and the row is added.") from None

    def _insert(m: dict[str, Any]) -> None:
        with eng.begin() as conn:
            conn.execute(text(load_sql("ingest/insert_manifest")), {
                "workload": m["workload"], "sha256": m["sha256"], "source_name": m["source_name"][:1024],
                "source_bytes": m["source_bytes"], "variant": m["variant"][:128], "row_count": m["rows"],
                "days": len(m["objects"]), "rows_outside_month": m["rows_outside_month"],
                "rows_no_event_time": m["rows_no_event_time"], "objects": json.dumps(m["objects"]),
                "manifest_uri": m["manifest_uri"][:1024]})

    return record, eng.dispose


def ingest(settings, args: list[str], workload_name: str = "taxi", lake_root: str | None = None,
           progress: Callable[[int, int, int, str], None] | None = None,
           on_start: Callable[[list[Source], list[str]], None] | None = None,
           record: Callable[[dict[str, Any]], None] | None = None) -> list[FileResult]:
    """Ingest every file behind ``args``. A refused file is a result with status ``refused`` and its error;
    the others go on (each file is committed whole or not at all). ``progress(index of the file, steps done,
    steps in all, what now)``; ``on_start(files, skipped)`` once the arguments are expanded."""
    from core import lake

    wl = workload(workload_name)
    root = lake.root(settings, lake_root)
    sources, skipped = expand(settings, args)
    if on_start:
        on_start(sources, skipped)
    seen: dict[str, str] = {}
    results = []
    for index, source in enumerate(sources):
        started = time.monotonic()
        step = (lambda _name, done, total, what, i=index: progress(i, done, total, what)) if progress else None
        try:
            results.append(ingest_file(settings, source, wl, root, seen, step, record))
        except IngestError as exc:
            results.append(FileResult(name=source.name, status="refused", error=str(exc),
                                      seconds=time.monotonic() - started))
    return results


def move_aside(settings, uri: str, lake_root: str | None = None) -> str:
    """Move one object out of the raw layer to the same path under ``rejected/`` (for a file that validation
    cannot read); returns its new URI. Only objects under ``raw/`` move."""
    from core import lake

    root = lake.root(settings, lake_root)
    norm = uri.replace("s3://", "s3a://", 1)
    base = root.replace("s3://", "s3a://", 1)
    if not norm.startswith(f"{base}/raw/"):
        raise IngestError(f"{uri}: only an object under {root}/raw/ can be moved aside")
    target = f"{root}/rejected/{norm[len(base) + 1:]}"
    fs, path = lake.filesystem(settings, uri)
    _, target_path = lake.filesystem(settings, target)
    if not _exists(fs, path):
        raise IngestError(f"{uri}: no such object")
    _make_parent(fs, target_path)
    fs.copy_file(path, target_path)
    fs.delete_file(path)
    return target

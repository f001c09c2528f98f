"""The Citi Bike trip record: the raw schema the platform ingests unchanged, and the rules a row must pass.

Column names follow the public monthly files (https://citibikenyc.com/system-data) since February 2021, when
Citi Bike took the schema Lyft's systems share: ``ride_id, rideable_type, started_at, ended_at,
start_station_name, start_station_id, end_station_name, end_station_id, start_lat, start_lng, end_lat, end_lng,
member_casual``. The files ship as CSV: every value is text. Station ids are strings ("6140.05", "HB101", "JC115")
even where they look like numbers, and a reader that infers types turns "5905.10" into the number 5905.1;
timestamps are wall-clock text with or without milliseconds ("2024-05-01 08:15:42", "2024-05-01 08:15:42.123");
the end station and the end coordinates may be empty (a ride that did not end at a dock). ``normalize`` maps any
of that, or a Parquet copy of it, onto ``RAW_SCHEMA``.

The files before February 2021 had another schema (``tripduration, starttime, stoptime, start station id, ...,
usertype, birth year, gender``): no ride id and other rider values ("Subscriber"/"Customer"). They are refused by
name, not guessed at.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from pyspark.sql import Column

RAW_SCHEMA = pa.schema(
    [
        ("ride_id", pa.string()),
        ("rideable_type", pa.string()),
        ("started_at", pa.timestamp("us")),
        ("ended_at", pa.timestamp("us")),
        ("start_station_name", pa.string()),
        ("start_station_id", pa.string()),
        ("end_station_name", pa.string()),
        ("end_station_id", pa.string()),
        ("start_lat", pa.float64()),
        ("start_lng", pa.float64()),
        ("end_lat", pa.float64()),
        ("end_lng", pa.float64()),
        ("member_casual", pa.string()),
    ]
)

STARTED, ENDED = "started_at", "ended_at"
STATION_ID_COLUMNS = ("start_station_id", "end_station_id")

# No other spelling of these columns is known in the published files: the map stays empty until one is seen.
COLUMN_ALIASES: dict[str, str] = {}

# A file without these is not a Citi Bike trip file. The names, the end station and the coordinates are optional:
# a missing one is filled with nulls (the end station and the coordinates are null in real rows too).
REQUIRED = ("ride_id", "rideable_type", STARTED, ENDED, "start_station_id", "member_casual")

# Where the raw records live in the lake and which column places a row in its day partition
# (``raw/bike/start_date=YYYY-MM-DD/``): what ``lambdaml ingest --workload bike`` and ``workloads.bike.generate``
# write.
RAW_DATASET = "raw/bike"
EVENT_TIME = STARTED
PARTITION_COLUMN = "start_date"

# ---------------------------------------------------------------------------------------------------------------------
# What a ride's fields may hold: ONE definition, for the validation rules below, the request contract
# (``contract.py``) and the features (``features.py``).
RIDEABLE_TYPES = ("classic_bike", "electric_bike", "docked_bike")  # docked_bike: files of 2021-2023 only
MEMBER_CASUAL = ("member", "casual")
# Minutes a ride includes before it costs extra: the label is a ride longer than this (Citi Bike's pricing: a
# member's classic ride includes 45 minutes, a single ride 30).
INCLUDED_MINUTES = {"member": 45, "casual": 30}
# A ride longer than a day is a bike not docked (lost, stolen, or a dock that did not register it), not a ride.
MAX_DURATION_S = 24 * 3600
# The service area with a margin (Manhattan, Brooklyn, Queens, the Bronx, Jersey City, Hoboken): a start outside
# it is a GPS fault (real e-bike rows have 0.0/0.0).
SERVICE_LAT = (40.45, 41.00)
SERVICE_LNG = (-74.30, -73.65)
STATION_ID_MAX_LEN = 32  # the longest id in the public files is far shorter; longer is not an id


class MissingColumns(ValueError):
    """A file that is not a Citi Bike trip table: a required column is absent."""


LEGACY_COLUMNS = frozenset({"tripduration", "starttime", "stoptime", "start station id", "usertype", "bikeid",
                            "Trip Duration", "Start Time", "Stop Time", "Start Station ID", "User Type"})


def check_required(columns: Iterable[str]) -> None:
    """Raise ``MissingColumns`` naming every required column the file lacks (and what the file looks like)."""
    columns = list(columns)
    names = {COLUMN_ALIASES.get(c, c) for c in columns}
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        hint = ""
        if LEGACY_COLUMNS & set(columns):
            hint = (" (this looks like a Citi Bike file from before February 2021, with tripduration/starttime/"
                    "usertype: that schema has no ride_id and other rider values, and is not read)")
        elif {"tpep_pickup_datetime", "PULocationID"} & set(columns):
            hint = " (this looks like a TLC taxi file: load it with --workload taxi)"
        raise MissingColumns(f"not a Citi Bike trip file: missing column(s) {', '.join(missing)}{hint}")


def _type_word(typ: pa.DataType) -> str:
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "text"
    if pa.types.is_floating(typ):
        return "numeric"
    if pa.types.is_integer(typ):
        return "integer"
    if pa.types.is_timestamp(typ):
        return "timestamp"
    return str(typ)


def variant(schema: pa.Schema, counts: bool = True) -> str:
    """Which known variant of the trip file a schema is, in words (for the ingest summary).

    The published files since February 2021 share one set of columns; what differs is how a copy types them:
    the CSV as shipped (all text), or a Parquet copy whose writer typed the timestamps and may have read the
    station ids as numbers (``normalize`` formats those back, see ``_station_ids``). ``counts=False`` is for a
    CSV, whose types are the reader's, not the file's: the era alone then.
    """
    names = set(schema.names)
    if "ride_id" in names:
        era = "2021+ (ride_id, rideable_type)"
        extra = sorted(names - set(RAW_SCHEMA.names))
        if extra:
            era += f", extra column(s) {', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''}"
    elif LEGACY_COLUMNS & names:
        era = "pre-2021 (tripduration, usertype)"
    else:
        era = "unknown"
    if not counts:
        return era
    parts = [era]
    if STARTED in names:
        parts.append(f"{_type_word(schema.field(STARTED).type)} times")
    if "start_station_id" in names:
        parts.append(f"{_type_word(schema.field('start_station_id').type)} station ids")
    return ", ".join(parts)


# ---------------------------------------------------------------------------------------------------------------------
# normalize

def _blank_to_null(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text cells that are empty or only spaces become nulls: the CSV's way of writing "none"."""
    blank = pc.equal(pc.utf8_trim_whitespace(col), "")
    return pc.if_else(blank, pa.scalar(None, col.type), col)


def _try_cast(col: pa.ChunkedArray, typ: pa.DataType) -> pa.ChunkedArray:
    """``col`` as ``typ``; a value that does not convert (a time "n/a", a latitude "x") becomes null instead of
    failing the file, as Spark's ``try_cast`` does (``core.raw.normalize_spark``), and validation quarantines the
    row if the column is one a rule needs."""
    try:
        return col.cast(typ, safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    out = []
    for value in col.to_pylist():
        try:
            out.append(pa.array([value], col.type).cast(typ, safe=False)[0].as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            out.append(None)
    return pa.chunked_array([pa.array(out, typ)], typ)


def _station_ids(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Station ids as the strings they are. A column a reader typed as numbers (every id in it looked numeric)
    is written back with two decimals: the New York ids since 2021 are ``dddd.dd`` ("5905.10", read as 5905.1).
    Integers (the pre-2021 ids) are written as they are."""
    typ = col.type
    if pa.types.is_floating(typ):
        return pa.chunked_array([pa.array([None if v is None or math.isnan(v) else f"{v:.2f}" for v in col.to_pylist()],
                                          pa.string())], pa.string())
    if pa.types.is_integer(typ):
        return col.cast(pa.string())
    return col


def normalize(table: pa.Table) -> pa.Table:
    """Rename known aliases, cast to ``RAW_SCHEMA``, add missing optional columns as nulls, drop unknown columns.

    Text timestamps are parsed (with or without fractional seconds, ``T`` or a space); a time zone on a typed
    timestamp is dropped, keeping its UTC wall clock as the TLC tables do; empty text cells become nulls. Raises
    ``MissingColumns`` (a ``ValueError``) naming the columns when a required one is absent.
    """
    table = table.rename_columns([COLUMN_ALIASES.get(name, name) for name in table.column_names])
    check_required(table.column_names)
    columns = []
    for field in RAW_SCHEMA:
        if field.name not in table.column_names:
            columns.append(pa.chunked_array([pa.nulls(len(table), field.type)], field.type))
            continue
        col = table.column(field.name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_large_string(col.type):
            col = col.cast(pa.string())
        if field.name in STATION_ID_COLUMNS:
            col = _station_ids(col)
        if pa.types.is_string(col.type):
            col = _blank_to_null(col)
        if pa.types.is_timestamp(col.type) and col.type.tz is not None:
            col = col.cast(pa.timestamp(col.type.unit))
        columns.append(_try_cast(col, field.type) if col.type != field.type else col)
    return pa.Table.from_arrays(columns, schema=RAW_SCHEMA)


# ---------------------------------------------------------------------------------------------------------------------
# The label, from the outcome: the ride ran past its included minutes.

def overtime_numpy(duration_s: np.ndarray, member_casual: np.ndarray) -> np.ndarray:
    """1.0 where the ride lasted longer than its rider's included minutes (casual or unknown riders: 30), else 0.0."""
    limit = np.where(member_casual == "member", INCLUDED_MINUTES["member"], INCLUDED_MINUTES["casual"]) * 60.0
    return (np.asarray(duration_s, dtype="float64") > limit).astype("float64")


def overtime_spark(duration_s: "Column", member_casual: "Column") -> "Column":
    """The Spark form of ``overtime_numpy`` (a null rider counts as casual, as there)."""
    from pyspark.sql import functions as F

    limit = F.when(member_casual == "member", F.lit(INCLUDED_MINUTES["member"] * 60.0)).otherwise(
        F.lit(INCLUDED_MINUTES["casual"] * 60.0))
    return (duration_s.cast("double") > limit).cast("double")


# ---------------------------------------------------------------------------------------------------------------------
# Validation rules: data for the batch layer, which does not read them yet (batch/validate.py still holds the taxi's
# rules). Each rule is a condition that means *bad*, in two forms that agree: over a pyarrow table in RAW_SCHEMA
# (null counts as not bad, as Spark's ``coalesce(bad, false)`` in ``batch.validate.tag``) and as a Spark Column.
# Checked in this order; a row goes to quarantine tagged with the first it fails. ``generate.DIRTY_RULE`` maps
# every dirty kind the generator makes to the rule that catches it.

@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    arrow: Callable[[pa.Table, dt.date], pa.ChunkedArray]  # bool, may hold nulls (null: not bad)
    spark: Callable[[dt.date], "Column"]


def _missing_arrow(table: pa.Table, name: str) -> pa.ChunkedArray:
    col = table.column(name)
    missing = pc.is_null(col)
    if pa.types.is_string(col.type):
        missing = pc.or_(missing, pc.fill_null(pc.equal(col, ""), False))
    return missing


def _missing_spark(name: str) -> "Column":
    from pyspark.sql import functions as F

    if RAW_SCHEMA.field(name).type != pa.string():  # comparing a timestamp with "" is an error under ANSI SQL
        return F.col(name).isNull()
    return F.col(name).isNull() | (F.col(name) == F.lit(""))


def _duration_us_arrow(table: pa.Table) -> pa.ChunkedArray:
    return pc.subtract(table.column(ENDED).cast(pa.int64()), table.column(STARTED).cast(pa.int64()))


def _duration_us_spark() -> "Column":
    from pyspark.sql import functions as F

    # To the microsecond: unix_timestamp would cut both times to the second.
    return F.timestamp_diff("MICROSECOND", F.col(STARTED), F.col(ENDED))


def _not_one_of_arrow(table: pa.Table, name: str, values: tuple[str, ...]) -> pa.ChunkedArray:
    col = table.column(name)
    return pc.or_(pc.is_null(col), pc.invert(pc.fill_null(pc.is_in(col, value_set=pa.array(values)), False)))


def _not_one_of_spark(name: str, values: tuple[str, ...]) -> "Column":
    from pyspark.sql import functions as F

    return F.col(name).isNull() | ~F.col(name).isin(*values)


def _outside_area_arrow(table: pa.Table) -> pa.ChunkedArray:
    lat, lng = table.column("start_lat"), table.column("start_lng")
    bad_lat = pc.or_(pc.is_nan(lat), pc.or_(pc.less(lat, SERVICE_LAT[0]), pc.greater(lat, SERVICE_LAT[1])))
    bad_lng = pc.or_(pc.is_nan(lng), pc.or_(pc.less(lng, SERVICE_LNG[0]), pc.greater(lng, SERVICE_LNG[1])))
    return pc.or_kleene(bad_lat, bad_lng)


def _outside_area_spark() -> "Column":
    from pyspark.sql import functions as F

    lat, lng = F.col("start_lat"), F.col("start_lng")
    return (F.isnan(lat) | ~lat.between(*SERVICE_LAT)) | (F.isnan(lng) | ~lng.between(*SERVICE_LNG))


def _outside_partition_arrow(table: pa.Table, day: dt.date) -> pa.ChunkedArray:
    return pc.not_equal(table.column(STARTED).cast(pa.date32()), pa.scalar(day, pa.date32()))


def _outside_partition_spark(day: dt.date) -> "Column":
    from pyspark.sql import functions as F

    return F.to_date(F.col(STARTED)) != F.lit(day)


RULES: tuple[Rule, ...] = (
    Rule("null_required_field", "no ride_id, started_at or ended_at: the row cannot be keyed, placed or labelled",
         lambda t, d: pc.or_(pc.or_(_missing_arrow(t, "ride_id"), _missing_arrow(t, STARTED)),
                             _missing_arrow(t, ENDED)),
         lambda d: _missing_spark("ride_id") | _missing_spark(STARTED) | _missing_spark(ENDED)),
    Rule("outside_partition", "started_at is not on the partition's day", _outside_partition_arrow,
         _outside_partition_spark),
    Rule("null_start_station", "no start station id: the main input of the model (an e-bike rented off-dock)",
         lambda t, d: _missing_arrow(t, "start_station_id"), lambda d: _missing_spark("start_station_id")),
    Rule("non_positive_duration", "ended_at at or before started_at: a clock error",
         lambda t, d: pc.less_equal(_duration_us_arrow(t), 0), lambda d: _duration_us_spark() <= 0),
    Rule("duration_too_long", f"longer than {MAX_DURATION_S // 3600} h: a bike not docked, not a ride",
         lambda t, d: pc.greater(_duration_us_arrow(t), MAX_DURATION_S * 1_000_000),
         lambda d: _duration_us_spark() > MAX_DURATION_S * 1_000_000),
    Rule("unknown_rideable_type", f"rideable_type none of {', '.join(RIDEABLE_TYPES)}",
         lambda t, d: _not_one_of_arrow(t, "rideable_type", RIDEABLE_TYPES),
         lambda d: _not_one_of_spark("rideable_type", RIDEABLE_TYPES)),
    Rule("unknown_member_casual", "member_casual neither member nor casual (Subscriber/Customer are pre-2021 values)",
         lambda t, d: _not_one_of_arrow(t, "member_casual", MEMBER_CASUAL),
         lambda d: _not_one_of_spark("member_casual", MEMBER_CASUAL)),
    Rule("start_outside_service_area", "start coordinates given but outside the service area (0.0/0.0: no GPS fix)",
         lambda t, d: _outside_area_arrow(t), lambda d: _outside_area_spark()),
)
RULE_NAMES = tuple(r.name for r in RULES)


def failed_rule(table: pa.Table, day: dt.date) -> np.ndarray:
    """For each row of ``table`` (in RAW_SCHEMA), the name of the first rule it fails, or None (object array)."""
    out = np.full(len(table), None, dtype=object)
    for rule in reversed(RULES):
        bad = pc.fill_null(rule.arrow(table, day), False).to_numpy(zero_copy_only=False).astype(bool)
        out[bad] = rule.name
    return out


def rules_spark(day: dt.date) -> list[tuple[str, "Column"]]:
    """(name, condition-that-means-bad) pairs in order: the shape ``batch.validate.rules`` returns for taxi."""
    return [(r.name, r.spark(day)) for r in RULES]

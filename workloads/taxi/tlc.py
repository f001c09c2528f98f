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

# Where the raw records live in the lake and which column places a row in its day partition
# (``raw/trips/pickup_date=YYYY-MM-DD/``): what ``lambdaml ingest`` and ``workloads.taxi.generate`` write.
RAW_DATASET = "raw/trips"
EVENT_TIME = PICKUP
PARTITION_COLUMN = "pickup_date"

# ---------------------------------------------------------------------------------------------------------------------
# What a trip's fields may hold: ONE definition. Batch validation (batch/validate.py) quarantines a row outside it and
# the request contract (workloads/taxi/contract.py, used by the API, the stream and the replayer) refuses a request
# outside it, both derived from these values, so the endpoint never accepts what validation would quarantine.
# Bounds are inclusive.
ZONE_IDS = (1, 265)  # every LocationID of the TLC zone lookup (workloads/taxi/data/taxi_zone_lookup.csv)
UNKNOWN_ZONES = (264, 265)  # "Unknown"/"NV" and "Unknown"/"NA" (service zone "N/A") in the lookup: no place at all
KNOWN_ZONES = (1, 263)  # the zones a trip may start and end in
# The meter records distance in hundredths of a mile: 0.00 is a trip the meter did not measure (a cancelled
# ride, a flag-down fare, a meter fault), so the label cannot be learnt from it. 200 miles is beyond any NYC fare.
TRIP_DISTANCE_MILES = (0.01, 200.0)
# passenger_count is entered by the driver (TLC data dictionary). 0 is ACCEPTED on purpose: it is a trip whose driver
# did not key in the count, and its times, zones and distance (what the duration is learnt from) are as real as any
# other trip's; the count is only a weak feature. Counts above 9 cannot fit a yellow cab and are quarantined.
PASSENGER_COUNT = (0, 9)
# A yellow trip longer than 3 hours is a meter left running, not a trip. Measured on the generator (generate.py here,
# 14 days x 20,000 trips, seeds 0-13): unshifted median 22 min, p99 100 min, p99.9 2.5 h, 0.03% over 3 h; the drift
# shift (all traffic 30% slower) p99.9 3.5 h, 0.26% over 3 h, before the generator capped its trips at this bound.
# The TLC's published statistics agree (2014 Taxicab Fact Book): the average yellow trip is 2.6 miles and 99% are
# under 12 miles; at Manhattan's typical 10-12 mph a 12-mile trip takes about an hour, so 3 h is three times the
# time of a 99th-percentile trip even in heavy traffic.
MAX_DURATION_S = 3 * 3600
MAX_SPEED_MPH = 80.0  # average over the whole trip; faster is a distance or a clock error


class MissingColumns(ValueError):
    """A file that is not a TLC yellow-trip table: a required column is absent."""


def check_required(columns) -> None:
    names = {COLUMN_ALIASES.get(c, c) for c in columns}
    missing = sorted(set(REQUIRED) - names)
    if missing:
        hint = ""
        if {"pickup_longitude", "Pickup_longitude", "Start_Lon"} & set(columns):
            hint = (" (this looks like a TLC file from before July 2016, with coordinates instead of zones: "
                    "those cannot be read as zones)")
        elif {"lpep_pickup_datetime", "pickup_datetime", "request_datetime"} & set(columns):
            hint = " (this looks like a green-taxi or for-hire-vehicle file, not a yellow-trip file)"
        raise MissingColumns(f"not a TLC yellow-trip file: missing column(s) {', '.join(missing)}{hint}")


def variant(schema: pa.Schema, counts: bool = True) -> str:
    """Which known variant of the yellow-trip file a schema is, in words (for the ingest summary).

    The variants differ by what the TLC added over the years: location ids (the files as published since
    2011 carry ``PULocationID``/``DOLocationID``), ``congestion_surcharge`` (2019), ``airport_fee`` /
    ``Airport_fee`` (2021 on; the spelling changed), ``cbd_congestion_fee`` (2025), and counts stored as
    int64 or double. ``normalize`` reads every one of them.
    """
    names = set(schema.names)
    if "cbd_congestion_fee" in names:
        era = "2025+ (cbd_congestion_fee)"
    elif names & {"airport_fee", "Airport_fee"}:
        era = "2021+ (" + next(n for n in ("Airport_fee", "airport_fee") if n in names) + ")"
    elif "congestion_surcharge" in names:
        era = "2019+ (congestion_surcharge)"
    else:
        era = "2011+ (location ids)"
    if not counts:  # a CSV: its types are the reader's, not the file's
        return era
    typ = schema.field("passenger_count").type if "passenger_count" in names else None
    kind = ("double" if pa.types.is_floating(typ) else "int64" if pa.types.is_integer(typ) else str(typ)) \
        if typ is not None else "no"
    return f"{era}, {kind} counts"


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

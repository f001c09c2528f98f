"""The taxi workload's online request, declared once: what ``POST /v1/predict`` and ``trips.requests`` accept.

The ranges are the ones batch validation quarantines by (``tlc``), so the endpoint never accepts a trip that
validation would quarantine. ``recorded`` ranges are those of earlier releases (zones 264/265 and a distance of 0
were accepted before the contract took its ranges from validation): the serving sync still accepts predictions made
then. ``column`` names the field's column in the real-time views (``sql/mysql/002_serving.sql``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from core import contract
from core.views import Views
from workloads.taxi import tlc
from workloads.taxi.tlc import DROPOFF, PICKUP

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

REQUEST = contract.Request(
    model_name="TripRequest",
    fields=(
        contract.key("trip_id", 64),
        contract.timestamp("pickup_ts"),
        contract.integer("PULocationID", *tlc.KNOWN_ZONES, recorded=tlc.ZONE_IDS, column="pu_location_id"),
        contract.integer("DOLocationID", *tlc.KNOWN_ZONES, recorded=tlc.ZONE_IDS, column="do_location_id"),
        contract.integer("passenger_count", *tlc.PASSENGER_COUNT, required=False, column="passenger_count"),
        contract.number("trip_distance", *tlc.TRIP_DISTANCE_MILES, recorded=(0.0, 500.0), column="trip_distance"),
        contract.integer("VendorID", 0, 2**31 - 1, required=False),
    ),
    description="A trip at pickup: ``trips.requests`` (key: trip_id), also the body of ``POST /v1/predict``.",
)

# One valid request: the service warms a model up with it, and the API description shows it.
EXAMPLE = {"trip_id": "example-1", "pickup_ts": "2026-01-05T08:30:00Z", "PULocationID": 161, "DOLocationID": 236,
           "passenger_count": 1, "trip_distance": 2.1, "VendorID": 2}

# Sent when the trip ends; the sync joins it to the trip's prediction by ``trip_id`` (``trip_outcomes``).
OUTCOME = contract.Outcome(
    model_name="TripCompleted",
    time="dropoff_ts",
    value="duration_s",
    value_range=(0.0, 1e9),
    positive=True,
    description="``trips.completed`` (key: trip_id): the actual outcome, sent when the trip ends.",
)

# The real-time views in MySQL (core.views): by pickup zone and hour, the label being the outcome's duration. The
# tables and columns keep the names they had before there were workloads (sql/mysql/001_platform.sql, 002).
VIEWS = Views(
    group="PULocationID",
    label=f"o.{OUTCOME.value}",
    predictions="predictions_recent",
    outcomes="trip_outcomes",
    hourly="zone_hour_stats",
    columns=(("sum_predicted", "sum_predicted_s"), ("sum_actual", "sum_actual_s"), ("sum_loss", "sum_abs_error_s")),
)

# The value the model learns: the trip's duration in seconds (the model fits its log, ``core.model``).
LABEL = "duration_s"


def examples(validated: "DataFrame") -> "DataFrame":
    """Validated TLC rows as training examples: the request's fields (numbers as doubles, as the features read
    them) and the label, from the dropoff time the raw row records."""
    from pyspark.sql import functions as F

    from workloads.taxi.rules import duration_s

    return validated.select(
        F.col(PICKUP).alias("pickup_ts"),
        *[F.col(name).cast("double").alias(name)
          for name in ("PULocationID", "DOLocationID", "passenger_count", "trip_distance", "VendorID")],
        duration_s().cast("double").alias(LABEL),
    )


def online(raw: pa.Table) -> pa.Table:
    """TLC rows (``tlc.RAW_SCHEMA``) as the trips' online traffic: each request field by its request name (the key
    is left out: whoever sends the trips names them), the dropoff time the outcome is sent at and its duration in
    seconds. What ``batch.replay`` sends; pure pyarrow, nulls kept for the replay to judge."""
    pickup, dropoff = raw.column(PICKUP).cast(pa.timestamp("us")), raw.column(DROPOFF).cast(pa.timestamp("us"))
    duration_us = pc.subtract(dropoff.cast(pa.int64()), pickup.cast(pa.int64()))
    return pa.table({
        "pickup_ts": pickup,
        **{name: raw.column(name) for name in ("PULocationID", "DOLocationID", "passenger_count", "trip_distance",
                                               "VendorID")},
        OUTCOME.time: dropoff,
        OUTCOME.value: pc.divide(duration_us.cast(pa.float64()), 1e6),
    })

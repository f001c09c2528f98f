"""The bike workload's online request, declared once: a ride at unlock, and the outcome sent when it ends.

At unlock the rider has chosen a dock, a bike and is known as a member or not: ``start_station_id`` (text, as the
public files write it), ``rideable_type`` and ``member_casual`` (categories), with ``ride_id`` and ``started_at``.
The outcome, sent when the bike is docked, is the ride's duration; the label (ran past the included minutes,
``schema.overtime_numpy``) derives from it and the rider. The values are ``schema``'s, the ones the validation
rules quarantine by, as for taxi.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from core import contract
from core.views import Views
from workloads.bike import schema

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

REQUEST = contract.Request(
    model_name="RideRequest",
    fields=(
        contract.key("ride_id", 64, description="Not blank; the key of the event (the files' 16 hex digits)"),
        contract.timestamp("started_at", description="when the bike was unlocked (the station's wall clock)"),
        contract.text("start_station_id", schema.STATION_ID_MAX_LEN, column="start_station_id",
                      description='the dock the ride starts at, as the public files write it ("6140.05", "HB101")'),
        contract.category("rideable_type", schema.RIDEABLE_TYPES, column="rideable_type"),
        contract.category("member_casual", schema.MEMBER_CASUAL, column="member_casual"),
    ),
    description="A ride at unlock (key: ride_id), also the body of ``POST /v1/predict`` for the bike workload.",
)

# One valid request: the service warms a model up with it, and the API description shows it.
EXAMPLE = {"ride_id": "example-1", "started_at": "2024-06-05T17:42:10Z", "start_station_id": "6140.05",
           "rideable_type": "classic_bike", "member_casual": "casual"}

# Sent when the bike is docked; the sync joins it to the ride's prediction by ``ride_id``. The label is
# ``duration_s`` over the rider's included minutes (``schema.INCLUDED_MINUTES``).
OUTCOME = contract.Outcome(
    model_name="RideEnded",
    time="ended_at",
    value="duration_s",
    value_range=(0.0, 1e9),
    positive=True,
    description="The ride's outcome (key: ride_id), sent when the bike is docked: its duration in seconds.",
)

# The real-time views in MySQL (core.views): by start dock and hour. The label, as ``schema.overtime_numpy`` computes
# it, from the ride's duration (the outcome ``o``) and its rider (the prediction ``p``).
_LIMIT_S = {rider: minutes * 60 for rider, minutes in schema.INCLUDED_MINUTES.items()}
VIEWS = Views(
    group="start_station_id",
    label=(f"CASE WHEN o.{OUTCOME.value} > CASE WHEN p.member_casual = 'member' THEN {_LIMIT_S['member']} "
           f"ELSE {_LIMIT_S['casual']} END THEN 1 ELSE 0 END"),
)

# The value the model learns: 1.0 when the ride ran past its included minutes, else 0.0.
LABEL = "overtime"


def examples(validated: "DataFrame") -> "DataFrame":
    """Validated Citi Bike rows as training examples: the request's fields, as a ride at unlock carries them, and
    the label, from the docking time the raw row records and the rider's included minutes."""
    from pyspark.sql import functions as F

    duration_s = F.unix_timestamp(F.col(schema.ENDED)) - F.unix_timestamp(F.col(schema.STARTED))
    return validated.select(
        *[F.col(f.name) for f in REQUEST.fields if f.kind != "key"],
        schema.overtime_spark(duration_s, F.col("member_casual")).alias(LABEL),
    )


def online(raw: pa.Table) -> pa.Table:
    """Citi Bike rows (``schema.RAW_SCHEMA``) as the rides' online traffic: each request field by its request name
    (the key too; whoever sends the rides may name them anew), the docking time the outcome is sent at and its
    duration in seconds. What ``batch.replay`` sends; pure pyarrow, nulls kept for the replay to judge."""
    started = raw.column(schema.STARTED).cast(pa.timestamp("us"))
    ended = raw.column(schema.ENDED).cast(pa.timestamp("us"))
    duration_us = pc.subtract(ended.cast(pa.int64()), started.cast(pa.int64()))
    return pa.table({
        **{f.name: started if f.name == schema.STARTED else raw.column(f.name) for f in REQUEST.fields},
        OUTCOME.time: ended,
        OUTCOME.value: pc.divide(duration_us.cast(pa.float64()), 1e6),
    })

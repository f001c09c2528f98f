"""The taxi workload's network: zone-pair and hour-of-week crosses in the wide part; zones, boroughs and the hour
embedded in the deep part. Day of week enters only through the wide hour-of-week cross and the is_weekend number:
a few days of data cannot teach an embedding for a weekday never seen in training."""

from __future__ import annotations

from core.architecture import Architecture
from workloads.taxi import features

ARCHITECTURE = Architecture.of(
    features,
    wide=("pu_do_cross", "hour_of_week"),
    deep={"pu_zone": "zone", "do_zone": "zone", "pu_borough": 4, "do_borough": 4, "hour": "time"},
    widths={"zone": 16, "time": 8},
    width_choices={"zone": (8, 16, 32), "time": (4, 8)},
)

"""The bike workload's network: station x hour, station x rider and hour-of-week crosses in the wide part; the
station, the hour, the day and the bike and rider kinds embedded in the deep part."""

from __future__ import annotations

from core.architecture import Architecture
from workloads.bike import features

ARCHITECTURE = Architecture.of(
    features,
    wide=("station_hour", "station_rider", "hour_of_week"),
    deep={"start_station": "station", "hour": "time", "dow": 3, "rideable": 2, "rider": 2},
    widths={"station": 16, "time": 8},
    width_choices={"station": (8, 16, 32), "time": (4, 8)},
)

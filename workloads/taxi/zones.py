"""NYC taxi zones: the TLC lookup plus a synthetic geography for the generator.

The TLC lookup gives each of the 265 zones a borough. Zone centroids are not
part of it, so each zone gets a deterministic point around its borough's
centre; distances between zones follow from those points.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

LOOKUP = Path(__file__).resolve().parent / "data" / "taxi_zone_lookup.csv"

# Approximate borough centres (km east, km north of lower Manhattan) and spreads (km).
BOROUGH_GEO = {
    "Manhattan": (0.0, 6.0, 2.5),
    "Brooklyn": (3.0, -6.0, 4.5),
    "Queens": (12.0, 3.0, 6.0),
    "Bronx": (6.0, 16.0, 4.0),
    "Staten Island": (-12.0, -12.0, 5.0),
    "EWR": (-14.0, -4.0, 0.5),
    "Unknown": (0.0, 0.0, 0.0),
    "N/A": (0.0, 0.0, 0.0),
}
BOROUGHS = sorted(BOROUGH_GEO)
AIRPORT_ZONES = (1, 132, 138)  # Newark, JFK, LaGuardia


@dataclass(frozen=True)
class Zones:
    ids: np.ndarray  # 1..265
    borough: np.ndarray  # borough name per zone id (index = id)
    borough_idx: np.ndarray  # index into BOROUGHS per zone id
    xy: np.ndarray  # (266, 2) km coordinates, row = zone id

    @property
    def known_ids(self) -> np.ndarray:
        return self.ids[(self.ids < 264)]

    def distance_km(self, pu: np.ndarray, do: np.ndarray) -> np.ndarray:
        """Street distance between zone centroids (Manhattan metric), at least 0.5 km."""
        d = np.abs(self.xy[pu] - self.xy[do]).sum(axis=1)
        return np.maximum(d, 0.5)


@lru_cache(maxsize=1)
def load() -> Zones:
    with open(LOOKUP, newline="") as fh:
        rows = list(csv.DictReader(fh))
    n = len(rows)
    borough = np.empty(n + 1, dtype=object)
    borough[0] = "N/A"
    xy = np.zeros((n + 1, 2))
    rng = np.random.default_rng(265)
    for row in rows:
        zid = int(row["LocationID"])
        name = row["Borough"] or "Unknown"
        borough[zid] = name
        cx, cy, spread = BOROUGH_GEO.get(name, (0.0, 0.0, 0.0))
        xy[zid] = (cx + rng.normal(0, spread), cy + rng.normal(0, spread))
    idx = np.array([BOROUGHS.index(b) for b in borough])
    return Zones(ids=np.arange(1, n + 1), borough=borough, borough_idx=idx, xy=xy)

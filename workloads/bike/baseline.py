"""The naive baseline the bike model must beat: the historical overtime rate of the start station at that hour.

Rates are smoothed towards the next coarser level, so a station-hour seen a few times does not predict 0 or 1:
station-hour -> station -> every ride, each with a prior weight of ``PRIOR_RIDES`` rides.
"""

from __future__ import annotations

import numpy as np

from core.task import Baseline
from workloads.bike.schema import STARTED

PRIOR_RIDES = 10.0
COLUMNS = ("start_station_id", STARTED)


def _hour(started: np.ndarray) -> np.ndarray:
    return np.asarray(started).astype("datetime64[h]").astype("int64") % 24


def _stations(values: np.ndarray) -> np.ndarray:
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


def _rates(keys: np.ndarray, y: np.ndarray, prior: np.ndarray | float) -> dict:
    """Smoothed rate per distinct key: (overtime rides + PRIOR_RIDES x prior) / (rides + PRIOR_RIDES)."""
    uniq, inverse = np.unique(keys, return_inverse=True)
    sums = np.bincount(inverse, weights=y, minlength=len(uniq))
    counts = np.bincount(inverse, minlength=len(uniq))
    prior_per_key = np.broadcast_to(prior, keys.shape)
    first = np.zeros(len(uniq), dtype="int64")
    first[inverse[::-1]] = np.arange(len(keys))[::-1]  # a row of each key, for its prior
    rates = (sums + PRIOR_RIDES * prior_per_key[first]) / (counts + PRIOR_RIDES)
    return dict(zip(uniq.tolist(), rates.tolist()))


def _fit(columns: dict[str, np.ndarray], y: np.ndarray):
    y = np.asarray(y, dtype="float64")
    overall = float(y.mean()) if len(y) else 0.0
    station = _stations(columns["start_station_id"])
    by_station = _rates(station, y, overall)
    station_rate = np.array([by_station[s] for s in station], dtype="float64")
    hour_key = np.char.add(station.astype(str), np.char.add("@", _hour(columns[STARTED]).astype(str)))
    by_station_hour = _rates(hour_key, y, station_rate)

    def predict(cols: dict[str, np.ndarray]) -> np.ndarray:
        st = _stations(cols["start_station_id"])
        keys = np.char.add(st.astype(str), np.char.add("@", _hour(cols[STARTED]).astype(str)))
        return np.array([by_station_hour.get(k, by_station.get(s, overall)) for k, s in zip(keys.tolist(), st)],
                        dtype="float64")

    return predict


BASELINE = Baseline(description="overtime rate of the start station at that hour (smoothed to the station's)",
                    columns=COLUMNS, fit=_fit)

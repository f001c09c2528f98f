"""The naive baseline the taxi model must beat: mean duration per zone pair, falling back to distance over the
typical speed for pairs never seen."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.task import Baseline

MIN_PAIR_TRIPS = 3
COLUMNS = ("PULocationID", "DOLocationID", "trip_distance")


@dataclass
class ZonePairBaseline:
    pair_mean: dict[int, float]
    seconds_per_mile: float
    overhead_s: float

    @classmethod
    def fit(cls, pu: np.ndarray, do: np.ndarray, miles: np.ndarray, duration_s: np.ndarray) -> "ZonePairBaseline":
        key = pu.astype("int64") * 1000 + do.astype("int64")
        order = np.argsort(key)
        keys, starts, counts = np.unique(key[order], return_index=True, return_counts=True)
        sums = np.add.reduceat(duration_s[order], starts)
        pair_mean = {int(k): float(s / c) for k, s, c in zip(keys, sums, counts) if c >= MIN_PAIR_TRIPS}
        moving = miles > 0.1
        spm = float(np.median(duration_s[moving] / miles[moving])) if moving.any() else 240.0
        return cls(pair_mean=pair_mean, seconds_per_mile=spm, overhead_s=60.0)

    def predict(self, pu: np.ndarray, do: np.ndarray, miles: np.ndarray) -> np.ndarray:
        key = pu.astype("int64") * 1000 + do.astype("int64")
        fallback = self.overhead_s + np.clip(miles, 0.0, None) * self.seconds_per_mile
        return np.array([self.pair_mean.get(int(k), f) for k, f in zip(key, fallback)])


def _fit(columns: dict[str, np.ndarray], y: np.ndarray):
    fitted = ZonePairBaseline.fit(*(columns[c] for c in COLUMNS), y)
    return lambda cols: fitted.predict(*(cols[c] for c in COLUMNS))


BASELINE = Baseline(description="mean duration per zone pair; distance over the median speed for pairs not seen",
                    columns=COLUMNS, fit=_fit)

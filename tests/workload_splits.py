"""Training splits of the bike workload in memory, from its generator and its features' in-process form, for
tests of training that need no services."""

from __future__ import annotations

import datetime as dt

import numpy as np


def bike_split(day: dt.date, rows: int, seed: int):
    from batch import train
    from core.workload import load
    from workloads.bike import schema
    from workloads.bike.generate import generate_day

    bike = load("bike")
    t = generate_day(day, rows, seed=seed, dirty_share=0.0)
    batch = {f.name: t.column(f.name).to_numpy(zero_copy_only=False)
             for f in bike.request.fields if f.kind != "key"}
    cols = bike.features.compute_numpy(dict(batch))
    duration = (t.column(schema.ENDED).to_numpy(zero_copy_only=False)
                - t.column(schema.STARTED).to_numpy(zero_copy_only=False)) / np.timedelta64(1, "s")
    cols[bike.label] = schema.overtime_numpy(duration, batch["member_casual"])
    cols.update(batch)
    return train.Split(cols, bike)


def bike_splits(first: dt.date, train_rows: int, other_rows: int) -> tuple:
    """(train, val, test) on three consecutive days from ``first``."""
    return (bike_split(first, train_rows, 1), bike_split(first + dt.timedelta(days=1), other_rows, 2),
            bike_split(first + dt.timedelta(days=2), other_rows, 3))

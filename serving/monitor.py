"""Monitoring: feature drift of live traffic and live error of the production model.

Every check looks at the live window (``monitoring.window_minutes``) of
``predictions_recent`` for the production version:

- **PSI per feature** (calendar features aside) between the live values (the in-process form of
  ``workloads.taxi.features`` over the requests' inputs) and the training histograms
  saved with the model (``Artifact.feature_stats``), on the same bin edges.
- **Live MAE** over the trips whose outcome has arrived (``trip_outcomes``)
  against the model's test MAE from the registry.

One row per feature (and one ``__live_mae__`` row) goes to ``drift_reports``,
upserted per (version, window), so re-running a check changes nothing. A
breach of either threshold is the verdict the ``monitoring`` DAG turns into
an update of the drift asset, which triggers ``batch_training``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.settings import Settings
from core.workload import default as default_workload

log = logging.getLogger("lambdaml.serving.monitor")
features = default_workload().features
MODEL_NAME = "trip_duration"
LIVE_MAE_ROW = "__live_mae__"
EPS = 1e-4


# ----------------------------------------------------------------------------------------------- pure
def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two histograms on the same bins (counts; empty bins smoothed)."""
    e = np.asarray(expected, dtype="float64")
    a = np.asarray(actual, dtype="float64")
    if e.sum() == 0 or a.sum() == 0:
        return 0.0
    e = np.clip(e / e.sum(), EPS, None)
    a = np.clip(a / a.sum(), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def live_histogram(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Counts of ``values`` on the training bins; values beyond the outer edges fall into the outer bins."""
    e = np.asarray(edges, dtype="float64")
    clipped = np.clip(np.asarray(values, dtype="float64"), e[0], e[-1])
    counts, _ = np.histogram(clipped, bins=e)
    return counts


# When a trip happens is not drift: a live window of one hour never matches the training days' clock.
CALENDAR = frozenset({"hour", "dow", "hour_of_week", "is_weekend"})


def feature_psi(stats: dict[str, dict], inputs: dict[str, np.ndarray]) -> dict[str, float]:
    """PSI of every non-calendar feature that has training statistics, for live request inputs."""
    live = features.compute_numpy(inputs)
    return {name: psi(np.asarray(s["counts"]), live_histogram(live[name], s["edges"]))
            for name, s in stats.items() if name in live and name not in CALENDAR and len(s.get("edges", [])) > 1}


@dataclass
class Verdict:
    model_version: str
    window_start: dt.datetime
    window_end: dt.datetime
    rows: int
    completed: int
    psi: dict[str, float] = field(default_factory=dict)
    live_mae_s: float | None = None
    test_mae_s: float | None = None
    reasons: list[str] = field(default_factory=list)

    @property
    def breached(self) -> bool:
        return bool(self.reasons)

    def summary(self) -> dict[str, Any]:
        worst = max(self.psi.items(), key=lambda kv: kv[1]) if self.psi else (None, 0.0)
        return {"model_version": self.model_version, "rows": self.rows, "completed": self.completed,
                "max_psi": round(worst[1], 4), "max_psi_feature": worst[0],
                "live_mae_s": self.live_mae_s, "test_mae_s": self.test_mae_s, "breached": self.breached,
                "reasons": self.reasons, "window_start": self.window_start.isoformat(),
                "window_end": self.window_end.isoformat()}


def judge(settings: Settings, verdict: Verdict) -> Verdict:
    """Fill in ``reasons`` from the thresholds; too little data gives no verdict on that signal."""
    m = settings.monitoring
    if verdict.rows >= m.min_rows:
        for name, value in sorted(verdict.psi.items(), key=lambda kv: -kv[1]):
            if value >= m.psi_threshold:
                verdict.reasons.append(f"PSI of {name} is {value:.3f} (threshold {m.psi_threshold})")
    if verdict.completed >= m.min_completed and verdict.live_mae_s is not None and verdict.test_mae_s:
        ratio = verdict.live_mae_s / verdict.test_mae_s
        if ratio >= m.mae_ratio_threshold:
            verdict.reasons.append(f"live MAE {verdict.live_mae_s:.0f}s is {ratio:.2f}x the test MAE "
                                   f"{verdict.test_mae_s:.0f}s (threshold {m.mae_ratio_threshold}x)")
    return verdict


# ----------------------------------------------------------------------------------------------- I/O
def _live_window(settings: Settings, version: str, start: dt.datetime, end: dt.datetime):
    from sqlalchemy import text

    from core.db import engine, load_sql

    eng = engine(settings)
    try:
        with eng.connect() as conn:
            rows = conn.execute(text(load_sql("serving/live_window")),
                                {"version": version, "start": start, "end": end}).mappings().all()
    finally:
        eng.dispose()
    return rows


def check(settings: Settings, now: dt.datetime | None = None, name: str = MODEL_NAME,
          window_minutes: int | None = None) -> Verdict | None:
    """Check the production model's live window, write ``drift_reports``, and return the verdict."""
    from core.registry import Registry

    registry = Registry(settings)
    mv = registry.production(name)
    if mv is None:
        log.info("no production version of %s: nothing to monitor", name)
        return None
    end = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None, microsecond=0)
    start = end - dt.timedelta(minutes=window_minutes or settings.monitoring.window_minutes)
    rows = _live_window(settings, mv.version, start, end)
    stats = registry.load(mv).feature_stats
    test_mae = ((mv.metrics.get("test") or {}).get("model") or {}).get("mae_s")
    verdict = Verdict(mv.version, start, end, len(rows), 0, test_mae_s=test_mae)
    if rows:
        inputs = {
            "pickup_ts": np.array([r["pickup_ts"] for r in rows], dtype="datetime64[us]"),
            "PULocationID": np.array([r["pu_location_id"] for r in rows], dtype="float64"),
            "DOLocationID": np.array([r["do_location_id"] for r in rows], dtype="float64"),
            "passenger_count": np.array([np.nan if r["passenger_count"] is None else r["passenger_count"]
                                         for r in rows], dtype="float64"),
            "trip_distance": np.array([r["trip_distance"] for r in rows], dtype="float64"),
        }
        verdict.psi = feature_psi(stats, inputs)
        errors = [abs(r["predicted_duration_s"] - r["duration_s"]) for r in rows if r["duration_s"] is not None]
        verdict.completed = len(errors)
        verdict.live_mae_s = float(np.mean(errors)) if errors else None
    judge(settings, verdict)
    _write(settings, verdict)
    log.info("drift check %s", verdict.summary())
    return verdict


def _write(settings: Settings, v: Verdict) -> None:
    from sqlalchemy import text

    from core.db import engine, load_sql

    base = {"model_version": v.model_version, "window_start": v.window_start, "window_end": v.window_end,
            "breached": v.breached, "live_mae_s": v.live_mae_s, "test_mae_s": v.test_mae_s}
    rows = [base | {"feature": name, "psi": value} for name, value in v.psi.items()]
    rows.append(base | {"feature": LIVE_MAE_ROW, "psi": 0.0})
    eng = engine(settings)
    try:
        with eng.begin() as conn:
            conn.execute(text(load_sql("serving/upsert_drift_report")), rows)
    finally:
        eng.dispose()

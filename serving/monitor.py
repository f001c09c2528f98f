"""Monitoring: feature drift of live traffic and live error of a workload's production model.

Every check looks at the live window (``monitoring.window_minutes``) of the workload's predictions table
(``core.views``: ``predictions_recent`` for taxi, ``bike_predictions`` for bike) for the production version:

- **PSI per feature** (calendar features aside) between the live values (the workload's features, in-process form,
  over the requests' stored inputs) and the training histograms saved with the model (``Artifact.feature_stats``),
  on the same bin edges.
- **Live error**: the workload's gate metric (``core.task``: MAE in seconds for taxi, log loss for bike) over the
  predictions whose outcome has arrived, against the same metric on the test split from the registry.

One row per feature (and one ``__live_mae__`` row, which holds the live error) goes to ``drift_reports``; its
``live_mae_s``/``test_mae_s`` columns hold the gate metric (named so before there were workloads; for bike they are
log losses). Upserted per (version, window), so re-running a check changes nothing. A breach of either threshold is
the verdict the workload's ``monitoring`` DAG turns into an update of its drift asset, which triggers its
``batch_training``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.settings import Settings
from core.workload import DEFAULT, Workload, load

log = logging.getLogger("lambdaml.serving.monitor")
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


def feature_psi(stats: dict[str, dict], inputs: dict[str, np.ndarray], wl: Workload | None = None) -> dict[str, float]:
    """PSI of every non-calendar feature that has training statistics, for live request inputs."""
    live = (wl or load(DEFAULT)).features.compute_numpy(inputs)
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
    live_mae_s: float | None = None  # the live gate metric: MAE in seconds for taxi, log loss for bike
    test_mae_s: float | None = None  # the same on the test split
    metric: str = "mae_s"  # which gate metric the two hold
    reasons: list[str] = field(default_factory=list)

    @property
    def breached(self) -> bool:
        return bool(self.reasons)

    def summary(self) -> dict[str, Any]:
        worst = max(self.psi.items(), key=lambda kv: kv[1]) if self.psi else (None, 0.0)
        return {"model_version": self.model_version, "rows": self.rows, "completed": self.completed,
                "max_psi": round(worst[1], 4), "max_psi_feature": worst[0],
                "live_mae_s": self.live_mae_s, "test_mae_s": self.test_mae_s, "metric": self.metric,
                "breached": self.breached,
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
            live, test = (f"MAE {verdict.live_mae_s:.0f}s", f"MAE {verdict.test_mae_s:.0f}s") \
                if verdict.metric == "mae_s" else (f"{verdict.metric} {verdict.live_mae_s:.3g}",
                                                   f"{verdict.metric} {verdict.test_mae_s:.3g}")
            verdict.reasons.append(f"live {live} is {ratio:.2f}x the test {test} "
                                   f"(threshold {m.mae_ratio_threshold}x)")
    return verdict


# ----------------------------------------------------------------------------------------------- I/O
def live_inputs(wl: Workload, rows: list[Any]) -> dict[str, np.ndarray]:
    """The stored request inputs of live rows (by column) as the features' in-process form reads them (by field):
    times as datetime64, numbers as doubles (a missing one NaN), text and categories as objects."""
    out: dict[str, np.ndarray] = {}
    for f in wl.request.stored[1:]:
        values = [r[f.column] for r in rows]
        if f.kind == "timestamp":
            out[f.name] = np.array(values, dtype="datetime64[us]")
        elif f.kind in ("integer", "number"):
            out[f.name] = np.array([np.nan if v is None else v for v in values], dtype="float64")
        else:
            out[f.name] = np.array(values, dtype=object)
    return out


def _live_window(settings: Settings, wl: Workload, version: str, start: dt.datetime, end: dt.datetime):
    from sqlalchemy import text

    from core import views as real_time
    from core.db import engine

    views = real_time.of(wl, settings)
    sql = views.statement("live_window", stored_columns=", ".join(f"p.{f.column}" for f in wl.request.stored))
    eng = engine(settings)
    try:
        with eng.connect() as conn:
            rows = conn.execute(text(sql),
                                {"version": version, "start": start, "end": end}).mappings().all()
    finally:
        eng.dispose()
    return rows


def check(settings: Settings, now: dt.datetime | None = None, name: str | None = None,
          window_minutes: int | None = None, workload: str = DEFAULT) -> Verdict | None:
    """Check the live window of the workload's production model (``name``, by default the workload's), write
    ``drift_reports``, and return the verdict."""
    from core.registry import Registry

    wl = load(workload)
    name = name or wl.model_name
    gate = wl.task.gate
    registry = Registry(settings)
    mv = registry.production(name)
    if mv is None:
        log.info("no production version of %s: nothing to monitor", name)
        return None
    end = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None, microsecond=0)
    start = end - dt.timedelta(minutes=window_minutes or settings.monitoring.window_minutes)
    rows = _live_window(settings, wl, mv.version, start, end)
    stats = registry.load(mv).feature_stats
    test_error = ((mv.metrics.get("test") or {}).get("model") or {}).get(gate)
    verdict = Verdict(mv.version, start, end, len(rows), 0, test_mae_s=test_error, metric=gate)
    if rows:
        verdict.psi = feature_psi(stats, live_inputs(wl, rows), wl)
        done = [r for r in rows if r["actual"] is not None]
        verdict.completed = len(done)
        if done:
            actual = np.array([r["actual"] for r in done], dtype="float64")
            predicted = np.array([r["predicted"] for r in done], dtype="float64")
            verdict.live_mae_s = float(wl.task.metrics(actual, predicted)[gate])
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

"""Compare the challenger with the champion and the naive baseline on one test split,
and decide promotion with a configurable rule."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from batch import train


@dataclass(frozen=True)
class PromotionRule:
    """Promote when the challenger beats the baseline by ``min_gain_vs_baseline`` and is no worse than the champion
    by more than ``max_loss_vs_champion``, both relative to the task's gate metric (``Task.gate``: MAE in seconds,
    log loss; lower is better)."""

    min_gain_vs_baseline: float = 0.15
    max_loss_vs_champion: float = 0.0
    gate: str = "mae_s"


def model_metrics(model, split: train.Split) -> dict[str, float]:
    """The task's metrics of ``model`` on ``split``."""
    return split.workload.task.metrics(split.y, train.predict_split(model, split))


def baseline_metrics(train_split: train.Split, test_split: train.Split) -> dict[str, float]:
    """The task's metrics of the workload's baseline, fitted on ``train_split``, on ``test_split``."""
    wl = test_split.workload
    predict = wl.baseline.fit(train_split.columns, train_split.y)
    return wl.task.metrics(test_split.y, predict(test_split.columns))


def decide(challenger: dict, base: dict, champion: dict | None, rule: PromotionRule) -> tuple[bool, str]:
    gate = rule.gate
    gain = 1.0 - challenger[gate] / base[gate]
    if gain < rule.min_gain_vs_baseline:
        return False, f"beats the baseline by {gain:.1%}, needs {rule.min_gain_vs_baseline:.0%}"
    if champion is not None:
        loss = challenger[gate] / champion[gate] - 1.0
        if loss > rule.max_loss_vs_champion:
            return False, f"worse than the champion by {loss:.1%}"
        return True, f"beats the baseline by {gain:.1%} and the champion by {-loss:.1%}"
    return True, f"beats the baseline by {gain:.1%}; no champion yet"


def feature_stats(split: train.Split, bins: int = 10) -> dict[str, dict]:
    """Per-feature histograms of the training data, saved with the model for drift checks."""
    stats = {}
    for f in split.workload.features.FEATURES:
        values = np.asarray(split.columns[f.name], dtype="float64")
        distinct = np.unique(values)
        if f.kind == "numeric" and len(distinct) <= bins:
            # Few distinct values (flags, counts): one bin each, edges halfway between them.
            mids = (distinct[1:] + distinct[:-1]) / 2 if len(distinct) > 1 else np.array([])
            edges = np.concatenate([[distinct[0] - 0.5], mids, [distinct[-1] + 0.5]])
        elif f.kind == "numeric":
            edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)))
        else:
            edges = np.arange(-0.5, f.cardinality + 0.5, max(1, f.cardinality // bins))
        counts, edges = np.histogram(values, bins=edges)
        stats[f.name] = {"edges": edges.tolist(), "counts": counts.tolist()}
    return stats

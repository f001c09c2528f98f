"""What a model learns and how it is judged: the task a workload declares (``Workload.task``).

Two kinds, each defined once here and nowhere else:

- ``REGRESSION_LOG_SECONDS``: a positive quantity (a duration in seconds). The network fits its log with a Huber
  loss; its output is turned back with ``exp``. Judged by MAE (the promotion gate), RMSE and MAPE.
- ``BINARY``: a 0/1 label. The network outputs a logit, trained with binary cross-entropy; its output is turned into
  a probability with the logistic function. Judged by log loss (the promotion gate), ROC AUC and the Brier score.

For both, the gate metric is an error: lower is better. Pure numpy and torch; no I/O. Torch is imported only
when a loss or an output is computed: loading a workload's definition stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

EPS = 1e-7  # probabilities are clipped to [EPS, 1 - EPS] before a log


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE and RMSE in seconds, MAPE in per cent."""
    err = y_pred - y_true
    return {
        "mae_s": float(np.mean(np.abs(err))),
        "rmse_s": float(np.sqrt(np.mean(err**2))),
        "mape_pct": float(np.mean(np.abs(err) / np.maximum(y_true, 1.0)) * 100.0),
    }


def log_loss(y_true: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, dtype="float64"), EPS, 1.0 - EPS)
    y = np.asarray(y_true, dtype="float64")
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """The probability that a random positive scores above a random negative (ties count half): the Mann-Whitney
    U statistic over average ranks. NaN when one class is absent."""
    y = np.asarray(y_true, dtype="float64") > 0.5
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    s = np.asarray(score, dtype="float64")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype="float64")
    sorted_s = s[order]
    # Average ranks (1-based) over runs of equal scores.
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_s)) + 1])
    ends = np.concatenate([starts[1:], [len(s)]])
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def binary_metrics(y_true: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Log loss, ROC AUC and Brier score of probabilities ``p``."""
    p = np.clip(np.asarray(p, dtype="float64"), 0.0, 1.0)
    y = np.asarray(y_true, dtype="float64")
    return {"log_loss": log_loss(y, p), "roc_auc": roc_auc(y, p), "brier": float(np.mean((p - y) ** 2))}


@dataclass(frozen=True)
class Task:
    kind: str  # "regression" or "binary"
    gate: str  # the metric the promotion rule compares (lower is better)
    unit: str  # how the gate metric reads: "s", "" (a log loss)
    target: Callable[[np.ndarray], np.ndarray]  # label -> what the network fits
    loss: Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]  # (network output, target) -> mean loss
    output: Callable[["torch.Tensor"], "torch.Tensor"]  # network output -> prediction (seconds, probability)
    # ``output`` on numpy arrays, for the prediction service's numpy scoring (``core.model.NumpyWideAndDeep``);
    # agrees with ``output`` to float32 rounding (``tests/unit/test_task.py``).
    output_numpy: Callable[[np.ndarray], np.ndarray]
    metrics: Callable[[np.ndarray, np.ndarray], dict[str, float]]  # (label, prediction) -> named metrics
    # The loss of one prediction as SQL over ``{predicted}`` and ``{actual}`` (the label): what the real-time views
    # sum per hour (``core.views``), so that their live error is the gate metric of the rows that completed.
    loss_sql: str = ""

    @property
    def val_metric(self) -> str:
        """The per-epoch validation metric that early stopping and the search minimise: ``val_<gate>``."""
        return f"val_{self.gate}"

    def initial_output(self, y: np.ndarray) -> float:
        """The network's starting bias: the mean target (regression), the log-odds of the base rate (binary)."""
        t = np.asarray(self.target(np.asarray(y, dtype="float64")), dtype="float64")
        if self.kind == "binary":
            rate = float(np.clip(t.mean() if len(t) else 0.5, EPS, 1.0 - EPS))
            return float(np.log(rate / (1.0 - rate)))
        return float(t.mean()) if len(t) else 0.0


def _huber(out: "torch.Tensor", target: "torch.Tensor") -> "torch.Tensor":
    import torch

    return torch.nn.functional.huber_loss(out, target, delta=1.0)


def _exp(out: "torch.Tensor") -> "torch.Tensor":
    return out.exp()


def _sigmoid_numpy(out: np.ndarray) -> np.ndarray:
    # tanh form: no overflow for large negative logits, as 1 / (1 + exp(-x)) would have
    return 0.5 * (1.0 + np.tanh(0.5 * out))


def _bce(out: "torch.Tensor", target: "torch.Tensor") -> "torch.Tensor":
    import torch

    return torch.nn.functional.binary_cross_entropy_with_logits(out, target)


def _sigmoid(out: "torch.Tensor") -> "torch.Tensor":
    return out.sigmoid()


REGRESSION_LOG_SECONDS = Task(
    kind="regression", gate="mae_s", unit="s",
    target=lambda y: np.log(np.maximum(y, 1.0)),
    loss=_huber,
    output=_exp,
    output_numpy=np.exp,
    metrics=regression_metrics,
    loss_sql="ABS({actual} - {predicted})",
)

BINARY = Task(
    kind="binary", gate="log_loss", unit="",
    target=lambda y: (np.asarray(y, dtype="float64") > 0.5).astype("float64"),
    loss=_bce,
    output=_sigmoid,
    output_numpy=_sigmoid_numpy,
    metrics=binary_metrics,
    loss_sql=f"-({{actual}} * LN(LEAST(GREATEST({{predicted}}, {EPS}), {1 - EPS})) "
             f"+ (1 - {{actual}}) * LN(1 - LEAST(GREATEST({{predicted}}, {EPS}), {1 - EPS})))",
)


@dataclass(frozen=True)
class Baseline:
    """The naive model a workload's trained one must beat: fitted on the training split's examples, it predicts
    what the task predicts (seconds, a probability) for the test split's."""

    description: str
    columns: tuple[str, ...]  # the example columns it reads (they stay in the features dataset)
    fit: Callable[[dict[str, np.ndarray], np.ndarray], Callable[[dict[str, np.ndarray]], np.ndarray]]

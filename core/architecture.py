"""Where a workload's features go in the wide & deep network (``core.model``), and the network's sizes.

A workload declares an ``Architecture`` (``Workload.model``): which categorical features get one learned weight per
id (the wide part: memorises frequent combinations, usually hashed crosses), which get an embedding into the deep
part (an MLP over the embeddings and every numeric feature: generalises to rare ones), and how wide each
embedding is. A width is a number or the name of a tunable width (``"zone"``), whose default and search choices the
architecture declares too; ``ModelConfig.widths`` holds the tuned values. Light: no torch here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    """The network's sizes: the tunable embedding widths by name (an architecture's defaults for those not set),
    the hidden layers and the dropout."""

    widths: dict[str, int] = field(default_factory=dict)
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """From ``to_dict``'s form; also reads the form of releases before workloads (``zone_dim=16, time_dim=8``
        for taxi's ``zone`` and ``time`` widths), so their registered models still load."""
        d = dict(d)
        widths = dict(d.pop("widths", {}) or {})
        for key in [k for k in d if k.endswith("_dim")]:
            widths[key[:-len("_dim")]] = int(d.pop(key))
        return cls(widths=widths, **{k: v for k, v in d.items() if k in ("hidden", "dropout")})


@dataclass(frozen=True)
class Architecture:
    wide: tuple[str, ...]  # categorical features summed as one learned weight per id
    deep: dict[str, int | str]  # categorical feature -> embedding width, or the name of a tunable width
    widths: dict[str, int]  # each tunable width's default
    width_choices: dict[str, tuple[int, ...]]  # each tunable width's search choices (batch.tune)
    numeric: tuple[str, ...]  # every numeric feature, in this order, into the deep part
    cardinality: dict[str, int]  # ids per categorical feature

    def __post_init__(self) -> None:
        unknown = [n for n in (*self.wide, *self.deep) if n not in self.cardinality]
        if unknown:
            raise ValueError(f"not categorical features of the workload: {unknown}")
        names = {v for v in self.deep.values() if isinstance(v, str)}
        if names - set(self.widths) or set(self.widths) != set(self.width_choices):
            raise ValueError(f"tunable widths {sorted(names)} need a default and choices each "
                             f"(defaults {sorted(self.widths)}, choices {sorted(self.width_choices)})")

    @classmethod
    def of(cls, features: Any, wide: tuple[str, ...], deep: dict[str, int | str], widths: dict[str, int],
           width_choices: dict[str, tuple[int, ...]]) -> "Architecture":
        """An architecture over a workload's feature set (``core.workload.FeatureSet``): numeric features and
        cardinalities come from it."""
        return cls(wide=tuple(wide), deep=dict(deep), widths=dict(widths), width_choices=dict(width_choices),
                   numeric=tuple(f.name for f in features.NUMERIC),
                   cardinality={f.name: f.cardinality for f in features.CATEGORICAL})

    @property
    def categorical_order(self) -> tuple[str, ...]:
        """The columns of the categorical input tensor: wide features, then deep ones not wide already."""
        return tuple(dict.fromkeys((*self.wide, *self.deep)))

    def dims(self, config: ModelConfig) -> dict[str, int]:
        """Each deep feature's embedding width under ``config``."""
        return {name: (config.widths.get(w, self.widths[w]) if isinstance(w, str) else int(w))
                for name, w in self.deep.items()}

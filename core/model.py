"""The wide & deep regressor of trip duration (predicts log seconds).

Wide part: one learned weight per bucket of hashed crosses (pickup zone x
dropoff zone, hour x day of week) — memorises frequent combinations.
Deep part: embeddings of zones, boroughs and time plus the numeric features,
through an MLP — generalises to rare ones. Their outputs add up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from core import features

WIDE = ("pu_do_cross", "hour_of_week")
# Day of week enters only through the wide hour-of-week cross and the is_weekend number:
# a few days of data cannot teach an embedding for a weekday never seen in training.
DEEP_CATEGORICAL = ("pu_zone", "do_zone", "pu_borough", "do_borough", "hour")
NUMERIC = tuple(f.name for f in features.NUMERIC)
CARDINALITY = {f.name: f.cardinality for f in features.CATEGORICAL}


@dataclass
class ModelConfig:
    zone_dim: int = 16
    time_dim: int = 8
    hidden: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


class WideAndDeep(nn.Module):
    def __init__(self, config: ModelConfig, label_mean: float = 0.0):
        super().__init__()
        self.config = config
        self.wide = nn.ModuleDict({name: nn.Embedding(CARDINALITY[name], 1) for name in WIDE})
        for emb in self.wide.values():
            nn.init.zeros_(emb.weight)
        dims = {"pu_zone": config.zone_dim, "do_zone": config.zone_dim, "pu_borough": 4, "do_borough": 4,
                "hour": config.time_dim}
        self.embeddings = nn.ModuleDict({n: nn.Embedding(CARDINALITY[n], dims[n]) for n in DEEP_CATEGORICAL})
        width = sum(dims.values()) + len(NUMERIC)
        layers: list[nn.Module] = []
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self.bias = nn.Parameter(torch.tensor(float(label_mean)))

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """``categorical``: (n, len(CATEGORICAL_ORDER)) int64; ``numeric``: (n, len(NUMERIC)) float."""
        cols = {name: categorical[:, i] for i, name in enumerate(CATEGORICAL_ORDER)}
        wide = sum(self.wide[n](cols[n]).squeeze(-1) for n in WIDE)
        deep_in = torch.cat([self.embeddings[n](cols[n]) for n in DEEP_CATEGORICAL] + [numeric], dim=1)
        return self.bias + wide + self.mlp(deep_in).squeeze(-1)


CATEGORICAL_ORDER = tuple(dict.fromkeys(WIDE + DEEP_CATEGORICAL))


def to_tensors(columns: dict, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Feature columns (numpy arrays keyed by feature name) to the model's two input tensors."""
    import numpy as np

    cat = torch.as_tensor(np.stack([np.asarray(columns[n], dtype="int64") for n in CATEGORICAL_ORDER], axis=1))
    num = torch.as_tensor(np.stack([np.asarray(columns[n], dtype="float32") for n in NUMERIC], axis=1))
    return cat.to(device), num.to(device)

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

from core.workload import default as default_workload

WIDE = ("pu_do_cross", "hour_of_week")
# Day of week enters only through the wide hour-of-week cross and the is_weekend number:
# a few days of data cannot teach an embedding for a weekday never seen in training.
DEEP_CATEGORICAL = ("pu_zone", "do_zone", "pu_borough", "do_borough", "hour")
features = default_workload().features
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

    n = len(columns[CATEGORICAL_ORDER[0]])
    cat = np.empty((n, len(CATEGORICAL_ORDER)), dtype="int64")  # filled in place: cheaper than np.stack
    for j, name in enumerate(CATEGORICAL_ORDER):
        cat[:, j] = columns[name]
    num = np.empty((n, len(NUMERIC)), dtype="float32")
    for j, name in enumerate(NUMERIC):
        num[:, j] = columns[name]
    return torch.from_numpy(cat).to(device), torch.from_numpy(num).to(device)


class FusedWideAndDeep:
    """A trained ``WideAndDeep`` folded for inference: the same function in fewer kernels.

    The deep embeddings feed the first linear layer only, so each embedding table times its block
    of that layer's weights is a table of partial pre-activations: ``E_n[i] @ W1_n.T`` for every
    id ``i``. Those tables, and the wide weights as one more column, are stacked into one, and a
    single ``embedding_bag(mode="sum")`` over the seven ids of a trip gives the first layer's
    categorical part and the wide sum together. Dropout is the identity at inference. What is left
    is one matrix product for the numeric inputs and the rest of the MLP, called as functions, not
    modules. On one trip (the service's common case) this took 43 us against the module's 138 us on
    the 2-core VM; results agree with ``WideAndDeep.forward`` to float32 rounding
    (``tests/unit/test_model.py``).

    Built from a model in eval mode, on its device; the model's weights are copied, so a later
    change to the model does not reach it.
    """

    def __init__(self, model: WideAndDeep):
        layers = list(model.mlp)
        linears = layers[::3]  # what WideAndDeep builds: (Linear, ReLU, Dropout) per hidden layer, then Linear
        shape_ok = len(layers) % 3 == 1 and len(linears) >= 2 and all(
            isinstance(m, nn.Linear) for m in linears) and all(
            isinstance(layers[i + 1], nn.ReLU) and isinstance(layers[i + 2], nn.Dropout)
            for i in range(0, len(layers) - 1, 3))
        if not shape_ok:
            raise ValueError("FusedWideAndDeep folds an MLP of (Linear, ReLU, Dropout) blocks and a last Linear only")
        with torch.no_grad():
            first = linears[0]
            hidden = first.out_features
            weight = first.weight
            tables, offsets, start, col = [], [], 0, 0
            deep_cols = {}
            for name in DEEP_CATEGORICAL:
                dim = model.embeddings[name].embedding_dim
                deep_cols[name] = (col, col + dim)
                col += dim
            for name in CATEGORICAL_ORDER:
                rows = CARDINALITY[name]
                table = weight.new_zeros((rows, hidden + 1))
                if name in deep_cols:
                    lo, hi = deep_cols[name]
                    table[:, :hidden] = model.embeddings[name].weight @ weight[:, lo:hi].T
                if name in WIDE:
                    table[:, hidden] = model.wide[name].weight[:, 0]
                tables.append(table)
                offsets.append(start)
                start += rows
            self.table = torch.cat(tables).contiguous()
            self.offsets = torch.tensor(offsets, dtype=torch.int64, device=weight.device)
            self.numeric_t = weight[:, col:].T.contiguous().clone()
            self.first_bias = first.bias.detach().clone()
            self.layers = [(m.weight.detach().clone(), m.bias.detach().clone()) for m in linears[1:]]
            self.bias = model.bias.detach().clone()
            self.hidden = hidden

    def __call__(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        bag = F.embedding_bag(categorical + self.offsets, self.table, mode="sum")
        h = torch.addmm(self.first_bias, numeric, self.numeric_t) + bag[:, :self.hidden]
        for weight, bias in self.layers[:-1]:
            h = F.linear(h.relu_(), weight, bias)
        weight, bias = self.layers[-1]
        return F.linear(h.relu_(), weight, bias).squeeze(-1) + bag[:, self.hidden] + self.bias

"""The wide & deep network every workload trains, shaped by the workload's ``Architecture``.

Wide part: one learned weight per id of each wide feature (hashed crosses such as pickup zone x dropoff zone, hour
x day of week): memorises frequent combinations. Deep part: embeddings of the deep features plus every numeric
feature, through an MLP: generalises to rare ones. Their outputs add up, with a bias, to one number per row: what
the workload's task fits (``core.task``: log seconds for taxi, a logit for bike).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from core.architecture import Architecture, ModelConfig

__all__ = ["Architecture", "FusedWideAndDeep", "ModelConfig", "NumpyWideAndDeep", "WideAndDeep", "to_arrays",
           "to_tensors"]


def _default_architecture() -> Architecture:
    from core.workload import default

    return default().model


class WideAndDeep(nn.Module):
    def __init__(self, config: ModelConfig, label_mean: float = 0.0, architecture: Architecture | None = None):
        super().__init__()
        arch = architecture or _default_architecture()
        self.config, self.architecture = config, arch
        self.wide = nn.ModuleDict({name: nn.Embedding(arch.cardinality[name], 1) for name in arch.wide})
        for emb in self.wide.values():
            nn.init.zeros_(emb.weight)
        dims = arch.dims(config)
        self.embeddings = nn.ModuleDict({n: nn.Embedding(arch.cardinality[n], d) for n, d in dims.items()})
        width = sum(dims.values()) + len(arch.numeric)
        layers: list[nn.Module] = []
        for hidden in config.hidden:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)
        self.bias = nn.Parameter(torch.tensor(float(label_mean)))
        self._order = arch.categorical_order

    def forward(self, categorical: torch.Tensor, numeric: torch.Tensor) -> torch.Tensor:
        """``categorical``: (n, len(categorical_order)) int64; ``numeric``: (n, len(numeric)) float."""
        cols = {name: categorical[:, i] for i, name in enumerate(self._order)}
        wide = sum(self.wide[n](cols[n]).squeeze(-1) for n in self.architecture.wide)
        deep_in = torch.cat([self.embeddings[n](cols[n]) for n in self.architecture.deep] + [numeric], dim=1)
        return self.bias + wide + self.mlp(deep_in).squeeze(-1)


def to_arrays(columns: dict, architecture: Architecture | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Feature columns (numpy arrays keyed by feature name) to the model's two inputs as numpy arrays:
    (n, categoricals) int64 and (n, numerics) float32."""
    arch = architecture or _default_architecture()
    order = arch.categorical_order
    n = len(columns[order[0]])
    cat = np.empty((n, len(order)), dtype="int64")  # filled in place: cheaper than np.stack
    for j, name in enumerate(order):
        cat[:, j] = columns[name]
    num = np.empty((n, len(arch.numeric)), dtype="float32")
    for j, name in enumerate(arch.numeric):
        num[:, j] = columns[name]
    return cat, num


def to_tensors(columns: dict, device: str | torch.device = "cpu",
               architecture: Architecture | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature columns (numpy arrays keyed by feature name) to the model's two input tensors."""
    cat, num = to_arrays(columns, architecture)
    return torch.from_numpy(cat).to(device), torch.from_numpy(num).to(device)


class FusedWideAndDeep:
    """A trained ``WideAndDeep`` folded for inference: the same function in fewer kernels.

    The deep embeddings feed the first linear layer only, so each embedding table times its block
    of that layer's weights is a table of partial pre-activations: ``E_n[i] @ W1_n.T`` for every
    id ``i``. Those tables, and the wide weights as one more column, are stacked into one, and a
    single ``embedding_bag(mode="sum")`` over a row's ids gives the first layer's
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
            arch = model.architecture
            deep_cols = {}
            for name in arch.deep:
                dim = model.embeddings[name].embedding_dim
                deep_cols[name] = (col, col + dim)
                col += dim
            for name in arch.categorical_order:
                rows = arch.cardinality[name]
                table = weight.new_zeros((rows, hidden + 1))
                if name in deep_cols:
                    lo, hi = deep_cols[name]
                    table[:, :hidden] = model.embeddings[name].weight @ weight[:, lo:hi].T
                if name in arch.wide:
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

    def numpy(self) -> NumpyWideAndDeep:
        """The same function on numpy arrays, for a model served on the CPU."""
        return NumpyWideAndDeep(self)


class NumpyWideAndDeep:
    """``FusedWideAndDeep`` computed with numpy, on the CPU: what the prediction service scores small batches with.

    The same operations on the same float32 weights (a gather and sum for the embedding bag, matrix products for
    the layers), with none of torch's per-call cost: on one trip the pass took 11 us against the torch form's
    31 us on the 2-core VM. Every torch call also lets go of the GIL and takes it back, a point where one of the
    service's request threads can step in and hold up the pass. numpy's small matrix products keep it, and so does
    adding up table rows one by one, which is how the bag of one or two rows is formed (``VIEW_ROWS``); numpy's
    gather lets it go, so larger batches pay that once.
    torch's ``embedding_bag`` wins on large batches (at 512 rows the whole prediction took 214 us with torch
    against 477 us here), so the service uses this one on small batches only (``speed.predictor.NUMPY_MAX_ROWS``).
    With one BLAS thread (the service sets ``OPENBLAS_NUM_THREADS`` to its torch threads) it spends no more CPU
    than wall time. Results agree with the torch forms to float32 rounding (``tests/unit/test_model.py``).
    """

    VIEW_ROWS = 2

    def __init__(self, fused: FusedWideAndDeep):
        def host(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().copy()

        self.table = host(fused.table)
        self.offsets = host(fused.offsets)
        self.numeric_t = host(fused.numeric_t)
        self.first_bias = host(fused.first_bias)
        self.layers = [(np.ascontiguousarray(host(w).T), host(b)) for w, b in fused.layers]  # x @ W.T as x @ Wt
        self.bias = np.float32(fused.bias.item())
        self.hidden = fused.hidden

    def __call__(self, categorical: np.ndarray, numeric: np.ndarray) -> np.ndarray:
        """``categorical``: (n, categoricals) int64; ``numeric``: (n, numerics) float32. One float32 a row."""
        ids = categorical + self.offsets
        if len(ids) <= self.VIEW_ROWS:  # added up row by row from views of the table: numpy keeps the GIL
            bag = np.stack([sum(self.table[i] for i in row) for row in ids.tolist()])
        else:  # a gather lets go of the GIL, but at a few rows and more it costs less than the Python loop
            bag = self.table[ids].sum(axis=1)
        h = numeric @ self.numeric_t
        h += self.first_bias
        h += bag[:, :self.hidden]
        for weight_t, bias in self.layers[:-1]:
            np.maximum(h, 0.0, out=h)
            h = h @ weight_t
            h += bias
        np.maximum(h, 0.0, out=h)
        weight_t, bias = self.layers[-1]
        return (h @ weight_t)[:, 0] + bias[0] + bag[:, self.hidden] + self.bias


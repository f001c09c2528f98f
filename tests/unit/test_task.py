"""``core.task`` and ``core.architecture``: the metrics against their definitions, the two tasks' transforms, and a
network shaped by each workload's declaration."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from core import task
from core.architecture import ModelConfig
from core.model import WideAndDeep
from core.workload import load


def test_roc_auc_is_the_share_of_ordered_pairs():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200).astype(float)
    score = np.round(rng.random(200) + 0.3 * y, 1)  # rounded: many ties
    pos, neg = score[y == 1], score[y == 0]
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
    assert task.roc_auc(y, score) == pytest.approx(np.mean(pairs), abs=1e-12)
    assert task.roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert np.isnan(task.roc_auc(np.ones(3), np.array([0.1, 0.2, 0.3])))


def test_binary_metrics_of_known_values():
    y, p = np.array([1.0, 0.0, 1.0, 0.0]), np.array([0.9, 0.2, 0.6, 0.4])
    m = task.binary_metrics(y, p)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.6, 0.6])))
    assert m["brier"] == pytest.approx(np.mean([0.01, 0.04, 0.16, 0.16]))
    assert m["roc_auc"] == 1.0
    assert np.isfinite(task.binary_metrics(y, np.array([1.0, 0.0, 0.0, 1.0]))["log_loss"])  # clipped, not inf


def test_the_tasks_transform_and_judge_their_labels():
    reg, binary = task.REGRESSION_LOG_SECONDS, task.BINARY
    y = np.array([0.5, 60.0, 600.0])
    np.testing.assert_allclose(reg.output(torch.tensor(reg.target(y))).numpy(), np.maximum(y, 1.0))
    assert reg.initial_output(y) == pytest.approx(np.mean(np.log([1.0, 60.0, 600.0])))
    assert (reg.gate, reg.val_metric, binary.gate, binary.val_metric) == ("mae_s", "val_mae_s", "log_loss",
                                                                         "val_log_loss")
    labels = np.array([0.0, 0.0, 0.0, 1.0])
    assert binary.output(torch.tensor([binary.initial_output(labels)])).item() == pytest.approx(0.25)
    logits = torch.tensor([2.0, -1.0])
    expected = torch.nn.functional.binary_cross_entropy(logits.sigmoid(), torch.tensor([1.0, 0.0]))
    assert binary.loss(logits, torch.tensor([1.0, 0.0])).item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_model_config_of_the_release_before_workloads_still_reads():
    old = {"zone_dim": 8, "time_dim": 4, "hidden": [32], "dropout": 0.2}
    assert ModelConfig.from_dict(old) == ModelConfig(widths={"zone": 8, "time": 4}, hidden=[32], dropout=0.2)
    assert ModelConfig.from_dict(ModelConfig(widths={"zone": 8}).to_dict()) == ModelConfig(widths={"zone": 8})


@pytest.mark.parametrize("name", ["taxi", "bike"])
def test_each_workload_shapes_its_network(name):
    wl = load(name)
    arch = wl.model
    model = WideAndDeep(ModelConfig(hidden=[8]), architecture=arch)
    assert set(model.wide) == set(arch.wide) and set(model.embeddings) == set(arch.deep)
    dims = arch.dims(ModelConfig(hidden=[8]))
    assert {n: e.embedding_dim for n, e in model.embeddings.items()} == dims
    assert model.mlp[0].in_features == sum(dims.values()) + len(arch.numeric)
    assert set(arch.numeric) == {f.name for f in wl.features.NUMERIC}
    assert set(arch.categorical_order) <= {f.name for f in wl.features.CATEGORICAL}
    n = 5
    cat = torch.stack([torch.randint(0, arch.cardinality[c], (n,)) for c in arch.categorical_order], dim=1)
    out = model(cat, torch.zeros(n, len(arch.numeric)))
    assert out.shape == (n,) and torch.isfinite(out).all()


def test_an_architecture_refuses_a_feature_it_does_not_have():
    from core.architecture import Architecture

    with pytest.raises(ValueError, match="not categorical features"):
        Architecture.of(load("bike").features, wide=("pu_zone",), deep={}, widths={}, width_choices={})
    with pytest.raises(ValueError, match="need a default and choices"):
        Architecture.of(load("bike").features, wide=(), deep={"hour": "time"}, widths={}, width_choices={})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_a_classifier_trained_on_cuda_serves_on_the_cpu_as_on_the_gpu():
    """The binary task on the GPU path (bf16 autocast, pinned copies): the model comes back on the CPU, predicts
    there what it predicted on the GPU, and learns as well as on the CPU."""
    import datetime as dt

    from batch import evaluate, train
    from tests.workload_splits import bike_splits

    tr, va, te = bike_splits(dt.date(2024, 6, 5), 12000, 3000)
    config = train.TrainConfig(max_epochs=8, batch_size=256, model=ModelConfig(hidden=[32, 16]))
    model, _ = train.fit(config, tr, va, device=torch.device("cuda"))
    assert all(p.device.type == "cpu" for p in model.parameters())
    on_cpu = train.predict_split(model, te)
    from core.model import to_tensors

    cat, num = to_tensors(te.columns, "cuda", tr.workload.model)
    on_gpu = train.predict(model.to("cuda"), cat, num, tr.workload.task)
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-3, atol=1e-5)
    cpu_model, _ = train.fit(config, tr, va, device=torch.device("cpu"))
    gpu_loss = task.binary_metrics(te.y, on_cpu)["log_loss"]
    cpu_loss = evaluate.model_metrics(cpu_model, te)["log_loss"]
    assert gpu_loss < 1.1 * cpu_loss, (gpu_loss, cpu_loss)


@pytest.mark.parametrize("t", [task.REGRESSION_LOG_SECONDS, task.BINARY])
def test_the_numpy_output_is_the_torch_output(t):
    # log seconds up to e^15 s; logits far out on both sides, where 1 / (1 + exp(-x)) would overflow
    out = np.linspace(-5.0, 15.0, 401) if t.kind == "regression" else np.linspace(-200.0, 200.0, 801)
    out = out.astype("float32")
    with np.errstate(over="raise", invalid="raise"):
        got = t.output_numpy(out)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, t.output(torch.from_numpy(out)).numpy(), rtol=2e-6, atol=1e-7)

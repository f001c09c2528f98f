"""The model and training loop on small in-memory data: no services, seconds."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import torch

from batch import evaluate, train
from core.model import ModelConfig, WideAndDeep, to_tensors
from core.task import regression_metrics
from workloads.taxi import features
from workloads.taxi.generate import generate_day


def make_split(day: dt.date, rows: int, seed: int) -> train.Split:
    t = generate_day(day, rows, seed=seed, dirty_share=0.0).to_pandas()
    batch = {
        "pickup_ts": t["tpep_pickup_datetime"].to_numpy().astype("datetime64[us]"),
        "PULocationID": t["PULocationID"].to_numpy(dtype="float64"),
        "DOLocationID": t["DOLocationID"].to_numpy(dtype="float64"),
        "passenger_count": t["passenger_count"].to_numpy(dtype="float64", na_value=np.nan),
        "trip_distance": t["trip_distance"].to_numpy(),
    }
    cols = features.compute_numpy(batch)
    cols["duration_s"] = (t["tpep_dropoff_datetime"] - t["tpep_pickup_datetime"]).dt.total_seconds().to_numpy()
    cols.update({k: batch[k] for k in ("PULocationID", "DOLocationID", "trip_distance")})
    return train.Split(cols)


def test_forward_shapes_and_finite_output():
    split = make_split(dt.date(2026, 11, 20), 64, 1)
    cat, num = to_tensors(split.columns)
    out = WideAndDeep(ModelConfig(hidden=[16]))(cat, num)
    assert out.shape == (64,) and torch.isfinite(out).all()


def test_training_is_reproducible_and_beats_the_baseline():
    tr = make_split(dt.date(2026, 11, 16), 6000, 1)
    va = make_split(dt.date(2026, 11, 17), 1500, 2)
    te = make_split(dt.date(2026, 11, 18), 1500, 3)
    cfg = train.TrainConfig(max_epochs=12, batch_size=256, model=ModelConfig(hidden=[64, 32]))
    model, history = train.fit(cfg, tr, va, device=torch.device("cpu"))
    again, _ = train.fit(cfg, tr, va, device=torch.device("cpu"))
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    assert min(h["val_mae_s"] for h in history) <= history[0]["val_mae_s"]

    model_mae = evaluate.model_metrics(model, te)["mae_s"]
    base_mae = evaluate.baseline_metrics(tr, te)["mae_s"]
    assert model_mae < 0.85 * base_mae, (model_mae, base_mae)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_training_on_cuda_gives_a_cpu_model_that_serves_like_the_gpu_one():
    """The GPU path (pinned copies, bf16 autocast): the model comes back on the CPU, as the service loads it,
    predicts there what it predicted on the GPU, and learns as well as on the CPU."""
    tr = make_split(dt.date(2026, 11, 16), 6000, 1)
    va = make_split(dt.date(2026, 11, 17), 1500, 2)
    te = make_split(dt.date(2026, 11, 18), 1500, 3)
    cfg = train.TrainConfig(max_epochs=12, batch_size=256, model=ModelConfig(hidden=[64, 32]))
    model, history = train.fit(cfg, tr, va, device=torch.device("cuda"))
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert min(h["val_mae_s"] for h in history) <= history[0]["val_mae_s"]

    cat, num = to_tensors(te.columns)
    on_cpu = train.predict(model, cat, num)
    on_gpu = train.predict(model.to("cuda"), cat.to("cuda"), num.to("cuda"))
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-3)

    cpu_model, _ = train.fit(cfg, tr, va, device=torch.device("cpu"))
    cpu_mae = evaluate.model_metrics(cpu_model, te)["mae_s"]
    gpu_mae = regression_metrics(te.y, on_cpu)["mae_s"]
    assert gpu_mae < 1.1 * cpu_mae, (gpu_mae, cpu_mae)


def test_metrics():
    m = regression_metrics(np.array([100.0, 200.0]), np.array([110.0, 180.0]))
    assert m["mae_s"] == 15.0 and np.isclose(m["rmse_s"], np.sqrt((100 + 400) / 2)) and np.isclose(m["mape_pct"], 10.0)


def _random_model(config: ModelConfig, seed: int) -> WideAndDeep:
    torch.manual_seed(seed)
    model = WideAndDeep(config, label_mean=6.5)
    with torch.no_grad():
        for emb in model.wide.values():  # zero at init: give the wide part something to add
            emb.weight.normal_(0.0, 0.3)
    return model.eval()


def test_fused_inference_computes_what_the_module_computes():
    from core.model import FusedWideAndDeep

    split = make_split(dt.date(2026, 11, 20), 300, 4)
    cat, num = to_tensors(split.columns)
    configs = (ModelConfig(), ModelConfig(hidden=[16]), ModelConfig(widths={"zone": 8}, hidden=[32, 16, 8]))
    for seed, config in enumerate(configs):
        model = _random_model(config, seed)
        fused = FusedWideAndDeep(model)
        with torch.inference_mode():
            for rows in (slice(0, 1), slice(0, 300)):
                expected, got = model(cat[rows], num[rows]), fused(cat[rows], num[rows])
                assert got.shape == expected.shape
                torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        with torch.no_grad():  # a copy: training the module further does not change the fused one
            model.bias += 1.0
        with torch.inference_mode():
            assert torch.allclose(fused(cat, num) + 1.0, model(cat, num), atol=1e-4)


def test_numpy_inference_computes_what_the_module_computes():
    import numpy as np

    from core.model import FusedWideAndDeep, to_arrays

    split = make_split(dt.date(2026, 11, 20), 300, 4)
    cat, num = to_tensors(split.columns)
    cat_np, num_np = to_arrays(split.columns)
    assert np.array_equal(cat_np, cat.numpy()) and np.array_equal(num_np, num.numpy())
    configs = (ModelConfig(), ModelConfig(hidden=[16]), ModelConfig(widths={"zone": 8}, hidden=[32, 16, 8]))
    for seed, config in enumerate(configs):
        model = _random_model(config, seed)
        scorer = FusedWideAndDeep(model).numpy()
        with torch.inference_mode():
            for rows in (slice(0, 1), slice(0, 2), slice(0, 3), slice(0, 300)):  # row by row, then gathered
                expected, got = model(cat[rows], num[rows]).numpy(), scorer(cat_np[rows], num_np[rows])
                assert got.dtype == np.float32 and got.shape == expected.shape
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        with torch.no_grad():  # a copy: training the module further does not change the numpy one
            model.bias += 1.0
        with torch.inference_mode():
            np.testing.assert_allclose(scorer(cat_np, num_np) + 1.0, model(cat, num).numpy(), atol=1e-4)


def test_fused_inference_refuses_an_mlp_it_does_not_know():
    import pytest

    from core.model import FusedWideAndDeep

    model = _random_model(ModelConfig(hidden=[16]), 0)
    model.mlp.insert(1, torch.nn.Tanh())
    with pytest.raises(ValueError, match="Linear, ReLU, Dropout"):
        FusedWideAndDeep(model)
    swapped = _random_model(ModelConfig(hidden=[16]), 0)  # the right layer types in another order
    swapped.mlp = torch.nn.Sequential(swapped.mlp[0], swapped.mlp[2], swapped.mlp[1], swapped.mlp[3])
    with pytest.raises(ValueError, match="Linear, ReLU, Dropout"):
        FusedWideAndDeep(swapped)

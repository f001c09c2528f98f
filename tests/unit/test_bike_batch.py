"""The batch layer's generic steps run the bike workload from its declaration alone (``core.workload``): the
validation rules in their Spark form, the training examples and their label, the features and the time split."""

from __future__ import annotations

import collections
import datetime as dt

import numpy as np

from batch import preprocess, validate
from core.workload import load
from tests.workload_splits import bike_splits
from workloads.bike import schema
from workloads.bike.generate import generate_day

DAY = dt.date(2024, 6, 5)
BIKE = load("bike")


def test_validation_quarantines_as_the_declared_rules_say(local_spark):
    """Spark, through ``batch.validate`` and the workload's ``rules``, tags each row with the rule the pyarrow form
    of the same rules names."""
    table = generate_day(DAY, 2000, seed=5, dirty_share=0.1)
    expected = collections.Counter(r for r in schema.failed_rule(table, DAY) if r is not None)
    df = local_spark.createDataFrame(table.to_pandas())
    valid, quarantined = validate.split(df, DAY, BIKE)
    got = {r[validate.REASON_COL]: r["count"] for r in quarantined.groupBy(validate.REASON_COL).count().collect()}
    assert got == dict(expected) and len(got) >= 5
    assert valid.count() + quarantined.count() == table.num_rows
    assert set(got) <= set(BIKE.rule_names) == set(schema.RULE_NAMES)


def test_examples_carry_the_request_fields_and_the_overtime_label(local_spark):
    days = [DAY, DAY + dt.timedelta(days=1)]
    tables = [generate_day(d, 1500, seed=3, dirty_share=0.0) for d in days]
    frames = [validate.split(local_spark.createDataFrame(t.to_pandas()), d, BIKE)[0] for t, d in zip(tables, days)]
    examples = BIKE.examples(frames[0].unionByName(frames[1]))
    request_fields = [f.name for f in BIKE.request.fields if f.kind != "key"]
    assert examples.columns == [*request_fields, BIKE.label]

    rows = examples.toPandas()
    raw = [t.to_pandas() for t in tables]
    duration = np.concatenate([(r[schema.ENDED] - r[schema.STARTED]).dt.total_seconds().to_numpy() for r in raw])
    rider = np.concatenate([r["member_casual"].to_numpy(dtype=object) for r in raw])
    assert sorted(rows[BIKE.label]) == sorted(schema.overtime_numpy(duration, rider))
    assert 0.03 < rows[BIKE.label].mean() < 0.25

    train_end, val_end = preprocess.cut_points(examples, BIKE.request.event_time)
    out = preprocess.transform(examples, train_end, val_end, BIKE).toPandas()
    assert set(BIKE.features.FEATURE_NAMES) <= set(out.columns)
    span = out.groupby("split")[BIKE.request.event_time].agg(["min", "max"])
    assert span.loc["train", "max"] < span.loc["val", "min"] <= span.loc["val", "max"] < span.loc["test", "min"]
    assert out["split"].value_counts()["train"] > 0.6 * len(out)


def test_the_lake_paths_derive_from_the_declaration():
    assert BIKE.partition("s3a://lake", DAY) == "s3a://lake/raw/bike/start_date=2024-06-05"
    assert BIKE.partition("s3a://lake", DAY, "quarantine") == "s3a://lake/quarantine/bike/start_date=2024-06-05"
    taxi = load("taxi")
    assert taxi.partition("/l", DAY, "validated") == "/l/validated/trips/pickup_date=2024-06-05"


def test_a_bike_model_trains_as_a_classifier_and_beats_the_station_hour_baseline():
    import torch

    from batch import evaluate, train
    from core.model import ModelConfig

    tr, va, te = bike_splits(DAY, 12000, 3000)
    config = train.TrainConfig(max_epochs=8, batch_size=256, model=ModelConfig(hidden=[32, 16]))
    model, history = train.fit(config, tr, va, device=torch.device("cpu"))
    assert "val_log_loss" in history[0] and min(h["val_log_loss"] for h in history) <= history[0]["val_log_loss"]
    got = evaluate.model_metrics(model, te)
    base = evaluate.baseline_metrics(tr, te)
    assert set(got) == set(base) == {"log_loss", "roc_auc", "brier"}
    p = train.predict_split(model, te)
    assert ((p > 0) & (p < 1)).all()
    assert got["log_loss"] < 0.9 * base["log_loss"] and got["roc_auc"] > base["roc_auc"], (got, base)
    promote, reason = evaluate.decide(got, base, None, evaluate.PromotionRule(min_gain_vs_baseline=0.05,
                                                                            gate=BIKE.task.gate))
    assert promote, reason

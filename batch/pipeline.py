"""The steps of a workload's ``batch_training`` DAG, one function each.

Each step takes and returns small JSON-able values (Airflow passes them as
XComs), does its I/O through the platform's adapters, and is idempotent:
partitions are overwritten, rows upserted, and a model version is only
registered once per DAG run. The first steps take the workload's name
(``core.workload``; taxi when none is named); the dataset they return carries
it to the steps after.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any

from core.lake import DataError, NoRawData
from core.settings import Settings, get_settings
from core.spark import storage_errors
from core.workload import DEFAULT, Workload, load

if TYPE_CHECKING:
    from core.registry import Registry

log = logging.getLogger(__name__)

# Set only by a benchmark that registers its versions under a name of its own; None: the workload's model name.
MODEL_NAME: str | None = None


def model_name(workload: Workload) -> str:
    """The registered model a run of ``workload`` trains: its declared ``model_name``."""
    return MODEL_NAME or workload.model_name


def _workload(dataset: dict[str, Any]) -> Workload:
    """The workload a dataset was made for (one made before datasets named it: the default)."""
    return load(dataset.get("workload", DEFAULT))


def _settings(settings: Settings | None) -> Settings:
    return settings or get_settings()


def dataset_key(dag_id: str, run_id: str) -> str:
    """Folder name of a run's features dataset (run ids carry ':' and '+')."""
    import re

    return f"{dag_id}/{re.sub(r'[^A-Za-z0-9_.=-]', '_', run_id)}"


MAX_RANGE_DAYS = 366


def partition_days(end_date: str, days_back: int, start_date: str | None = None) -> list[str]:
    """The days a run covers: ``start_date`` .. ``end_date`` when a start is given, else the ``days_back`` days
    ending on ``end_date``."""
    end = dt.date.fromisoformat(end_date)
    if start_date:
        start = dt.date.fromisoformat(start_date)
        if start > end:
            raise DataError(f"start_date {start} is after end_date {end}")
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise DataError(f"{start} .. {end} spans {(end - start).days + 1} days; at most {MAX_RANGE_DAYS}")
        days_back = (end - start).days + 1
    return [(end - dt.timedelta(days=i)).isoformat() for i in reversed(range(days_back))]


def fail_fast(step, *args, **kwargs):
    """Run a step in an Airflow task: at the batch layer's CPU priority (``yield_cpu``), and a ``DataError`` (the
    same data gives the same error) fails the task at once, without the retries that are there for services that
    may come back."""
    yield_cpu(get_settings())
    try:
        return step(*args, **kwargs)
    except DataError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def yield_cpu(settings: Settings) -> int:
    """Lower this process's CPU priority to ``batch.cpu_nice``, for it and every process it starts from now on (a
    Spark JVM and its Python workers, a local Ray): the speed layer, which runs at the default priority, then gets
    the cores first while a training runs on the same machine. Only ever lowers it (an unprivileged process cannot
    raise it back); returns the niceness now. Called in a task's own process, never in a long-lived one."""
    import os

    now = os.nice(0)
    return os.nice(settings.batch.cpu_nice - now) if settings.batch.cpu_nice > now else now


def _spark(settings: Settings, step: str):
    from core.spark import build_session

    spark = build_session(settings, f"lambdaml-batch-{step}")
    spark.sparkContext.setLogLevel("WARN")
    return spark


def validate_day(day: str, lake_root: str | None = None, settings: Settings | None = None,
                 workload: str = DEFAULT) -> dict[str, Any]:
    """Validate one day. A day without raw data is no error here (a range may have empty days): it reports
    ``missing`` and ``preprocess`` leaves it out; a file that cannot be read fails (``DataError``)."""
    from batch import validate

    s = _settings(settings)
    try:
        with storage_errors(s, "validate"):
            r = validate.run(_spark(s, "validate"), s, dt.date.fromisoformat(day), lake_root, load(workload))
    except NoRawData as exc:
        return {"day": day, "rows_in": 0, "valid": 0, "quarantined": 0, "by_rule": {}, "missing": str(exc),
                "objects": []}
    return {"day": day, "rows_in": r.rows_in, "valid": r.valid, "quarantined": r.quarantined, "by_rule": r.by_rule,
            "objects": [o.record() for o in r.objects]}


def preprocess(days: list[str], dataset: str, dag_id: str, run_id: str, lake_root: str | None = None,
               settings: Settings | None = None, validated: list[dict[str, Any]] | None = None,
               workload: str = DEFAULT) -> dict[str, Any]:
    """Features and splits of ``days``. With ``validated`` (the ``validate_day`` results), only the days that
    hold valid trips are read, and the raw objects they were read from ride along for the registry."""
    from batch import preprocess as pre
    from core.events import BatchEvent, publish_batch_event

    s = _settings(settings)
    objects: list[dict[str, Any]] = []
    if validated is not None:
        objects = [o for v in validated if v["valid"] > 0 for o in v.get("objects", [])]
        with_data = {v["day"] for v in validated if v["valid"] > 0}
        if not with_data:
            missing = [v["day"] for v in validated if v.get("missing")]
            raise DataError(f"no valid trips in {min(days)} .. {max(days)}: {len(missing)} of {len(days)} day(s) "
                            "hold no raw data and the rest none that passed validation. Load the data with "
                            "`lambdaml ingest`, or choose the days that hold it (start_date/end_date).")
        days = [d for d in days if d in with_data]
    with storage_errors(s, "preprocess"):
        result = pre.run(_spark(s, "preprocess"), s, [dt.date.fromisoformat(d) for d in days], dataset, lake_root,
                         load(workload))
    publish_batch_event(s, BatchEvent(dag_id=dag_id, run_id=run_id, step="preprocess", status="success",
                                      rows=sum(result.rows.values()), uri=result.uri))
    return {"uri": result.uri, "rows": result.rows, "feature_spec": result.feature_spec, "days": days,
            "cuts": list(result.cuts), "objects": objects, "workload": workload}


def _load(settings: Settings, dataset: dict[str, Any], split: str):
    from batch import train

    return train.load_split(settings, dataset["uri"], split, _workload(dataset))


def tune(dataset: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    from batch import tune as tuning

    s = _settings(settings)
    storage = s.runtime_dir / "ray" / dataset["uri"].rsplit("/", 1)[-1]
    result = tuning.run(s, _load(s, dataset, "train"), _load(s, dataset, "val"), storage)
    return {"config": result.best_config.to_dict(), "trials": result.trials, "metric": result.metric,
            "best_val": result.best_val}


def train_and_register(dataset: dict[str, Any], tuned: dict[str, Any], run_id: str,
                       settings: Settings | None = None) -> dict[str, Any]:
    """Train the tuned configuration in full and register it as a candidate (once per run)."""
    from batch import evaluate, train
    from core.registry import Artifact, Registry

    wl = _workload(dataset)
    name = model_name(wl)
    s = _settings(settings)
    registry = Registry(s)
    for existing in registry.list(name):
        if existing.params.get("dag_run_id") == run_id:
            return {"version": existing.version}  # this run already registered its model
    tr, va = _load(s, dataset, "train"), _load(s, dataset, "val")
    config = train.TrainConfig.from_dict(tuned["config"])
    model, history = train.fit(config, tr, va)
    metric = tr.workload.task.val_metric
    artifact = Artifact(model.state_dict(), config.model.to_dict(), wl.features.spec_version(),
                        feature_stats=evaluate.feature_stats(tr),
                        metrics={metric: min(h[metric] for h in history), "epochs": len(history)})
    params = {**config.to_dict(), "dag_run_id": run_id, "trials": tuned["trials"]}
    partitions = [wl.partition_path(dt.date.fromisoformat(d)) for d in dataset["days"]]
    mv = registry.register(name, artifact, params, partitions, data_objects=dataset.get("objects", []))
    return {"version": mv.version}


def apply_decision(registry: Registry, name: str, version: str, promote: bool) -> None:
    """Promote ``version`` if chosen and never promoted yet; in any case leave no announcement pending.

    A try can commit the promotion and then fail because Kafka did not acknowledge the
    announcement (``AnnouncementError``). Its retry finds the version promoted already and must
    still announce it, or the service would never hear of it. A version promoted once is never
    promoted again by a retry: if a later version (or a rollback) replaced it meanwhile, that stands."""
    if promote and registry.get(name, version).promoted_at is None:
        registry.promote(name, version)  # publishes the outbox after the commit
    else:
        registry.publish_pending()


def recorded_verdict(metrics: dict[str, Any]) -> tuple[bool, str, dict[str, Any]] | None:
    """The verdict an earlier try of ``evaluate_and_promote`` recorded with the version (promoted?, reason,
    test metrics), or None if it was never evaluated. A retry keeps it: evaluated again, with the version
    now in production as its own champion, it would be judged against no champion and overwrite the record."""
    if not isinstance(metrics.get("promoted"), bool) or "decision" not in metrics or "test" not in metrics:
        return None
    return metrics["promoted"], metrics["decision"], metrics["test"]


def evaluate_and_promote(dataset: dict[str, Any], registered: dict[str, Any],
                         settings: Settings | None = None) -> dict[str, Any]:
    from batch import evaluate
    from core.registry import Registry

    wl = _workload(dataset)
    name = model_name(wl)
    s = _settings(settings)
    registry = Registry(s)
    challenger_mv = registry.get(name, registered["version"])
    verdict = recorded_verdict(challenger_mv.metrics)
    if verdict is None:
        tr, te = _load(s, dataset, "train"), _load(s, dataset, "test")
        challenger = evaluate.model_metrics(registry.load(challenger_mv).build_model(wl), te)
        base = evaluate.baseline_metrics(tr, te)
        champion_mv = registry.production(name)
        champion = None
        if champion_mv is not None and champion_mv.version != challenger_mv.version:
            champion = evaluate.model_metrics(registry.load(champion_mv).build_model(wl), te)
        promote, reason = evaluate.decide(challenger, base, champion, evaluate.PromotionRule(gate=wl.task.gate))
        test = {"model": challenger, "baseline": base, "champion": champion}
        registry.update_metrics(name, challenger_mv.version, {
            **challenger_mv.metrics, "test": test, "champion_version": champion_mv.version if champion_mv else None,
            "decision": reason, "promoted": promote})
        verdict = promote, reason, test
    else:
        log.info("%s %s was evaluated by an earlier try (%s); its verdict stands", name, challenger_mv.version,
                 verdict[1])
    promote, reason, test = verdict
    apply_decision(registry, name, challenger_mv.version, promote)
    return {"version": challenger_mv.version, "promoted": promote, "reason": reason, "test": test,
            "model_name": name, "gate": wl.task.gate}


def publish(validated: list[dict[str, Any]], dataset: dict[str, Any], tuned: dict[str, Any],
            outcome: dict[str, Any], dag_id: str, run_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """Metrics to the metrics topic; the training run to MySQL and Hive."""
    from core import kafka
    from serving import training_runs

    s = _settings(settings)
    now = dt.datetime.now(dt.UTC)
    test = outcome["test"]
    gate = outcome.get("gate", "mae_s")
    name_of_model = outcome.get("model_name") or model_name(load(DEFAULT))
    producer = kafka.producer(s)
    for name, value in ([(f"test_{k}", v) for k, v in test["model"].items()]
                        + [(f"baseline_{gate}", test["baseline"][gate])]):
        producer.produce(s.kafka.metrics_topic, key=b"batch_training", value=kafka.encode({
            "source": "batch_training", "name": name, "value": value,
            "tags": {"model_name": name_of_model, "model_version": outcome["version"], "run_id": run_id},
            "ts": now.isoformat()}))
    if producer.flush(30) != 0:
        raise RuntimeError("could not deliver metrics")
    run = {
        "run_id": run_id, "dag_id": dag_id, "model_name": name_of_model, "model_version": outcome["version"],
        "status": "promoted" if outcome["promoted"] else "rejected", "trials": tuned["trials"],
        "best_params": json.dumps(tuned["config"]), "metrics_json": json.dumps(test),
        "rows_in": sum(v["rows_in"] for v in validated), "quarantined": sum(v["quarantined"] for v in validated),
        # The Hive table's two error columns are a regression's; a classifier's metrics are in model_metrics.
        "train_rows": dataset["rows"]["train"], "test_mae_s": test["model"].get("mae_s"),
        "baseline_mae_s": test["baseline"].get("mae_s"), "finished_at": now.replace(tzinfo=None),
    }
    training_runs.record(s, run, _spark(s, "publish"))
    return {"run_id": run_id, "version": outcome["version"], "promoted": outcome["promoted"]}

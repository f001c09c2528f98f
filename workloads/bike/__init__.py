"""Citi Bike overtime: will a ride run past its included minutes? The platform's second workload.

A binary classification at unlock time (start dock, time, bike type, member or casual), on the public Citi Bike
trip schema (``schema.py``); the outcome arrives when the bike is docked. ``WORKLOAD`` is what the layers read of it
(``core.workload.load("bike")``). The generator is not imported here: loading the definition stays light (numpy,
pyarrow and pydantic; Spark only when a feature's Spark form is built).
"""

from __future__ import annotations

from core.task import BINARY
from core.workload import Workload
from workloads.bike import baseline, contract, features, model, schema

WORKLOAD = Workload(
    name="bike",
    dataset=schema.RAW_DATASET,
    event_time=schema.EVENT_TIME,
    partition_column=schema.PARTITION_COLUMN,
    schema=schema.RAW_SCHEMA,
    normalize=schema.normalize,
    check_required=schema.check_required,
    variant=schema.variant,
    request=contract.REQUEST,
    outcome=contract.OUTCOME,
    features=features,
    rules=schema.rules_spark,
    rule_names=schema.RULE_NAMES,
    examples=contract.examples,
    label=contract.LABEL,
    task=BINARY,
    model=model.ARCHITECTURE,
    baseline=baseline.BASELINE,
    prediction_field="overtime_probability",
    batch_key="rides",
    example=contract.EXAMPLE,
    views=contract.VIEWS,
    online=contract.online,
    model_name="bike_overtime",
    aliases=dict(schema.COLUMN_ALIASES),
)

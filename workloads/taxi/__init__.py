"""NYC TLC yellow-taxi trip duration: the platform's first workload.

``WORKLOAD`` is what the layers read of it (``core.workload.load("taxi")``). The generator is not imported
here: loading the definition stays light (numpy and pyarrow; Spark only when a feature's Spark form is built).
"""

from __future__ import annotations

from core.task import REGRESSION_LOG_SECONDS
from core.workload import Workload
from workloads.taxi import baseline, contract, features, model, rules, tlc

WORKLOAD = Workload(
    name="taxi",
    dataset=tlc.RAW_DATASET,
    event_time=tlc.EVENT_TIME,
    partition_column=tlc.PARTITION_COLUMN,
    schema=tlc.RAW_SCHEMA,
    normalize=tlc.normalize,
    check_required=tlc.check_required,
    variant=tlc.variant,
    request=contract.REQUEST,
    outcome=contract.OUTCOME,
    features=features,
    rules=rules.rules,
    rule_names=rules.RULE_NAMES,
    examples=contract.examples,
    label=contract.LABEL,
    task=REGRESSION_LOG_SECONDS,
    model=model.ARCHITECTURE,
    baseline=baseline.BASELINE,
    prediction_field="predicted_duration_s",
    batch_key="trips",
    example=contract.EXAMPLE,
    views=contract.VIEWS,
    online=contract.online,
    model_name="trip_duration",
    aliases=dict(tlc.COLUMN_ALIASES),
)

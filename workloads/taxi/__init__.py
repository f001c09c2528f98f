"""NYC TLC yellow-taxi trip duration: the platform's first workload.

``WORKLOAD`` is what the layers read of it (``core.workload.load("taxi")``). Only ``tlc`` is imported here,
so that loading the definition (``lambdaml ingest``, the request contract) does not pull in the features
or the generator.
"""

from __future__ import annotations

from core.workload import Workload
from workloads.taxi import contract, tlc

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
    aliases=dict(tlc.COLUMN_ALIASES),
)

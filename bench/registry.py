"""Every benchmark ``python -m bench`` runs, in this order: adding one is one line in ``BENCHMARKS``.

Long ones go in ``OPT_IN`` instead: they run only when named with ``--only``.

An entry names a module ``bench.<name>`` whose typer CLI takes ``--out DIR`` and writes its JSON
result there through ``bench.common.write_result`` (with ``summary=`` lines from
``bench.common.comparison`` for the table). ``args`` are the options of a full run; ``smoke``
shrinks it so that it only proves the benchmark runs end to end (``python -m bench --smoke``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    name: str  # the module bench.<name>, and its rows in the table
    args: tuple[str, ...] = ()  # options of a full run, besides --out
    smoke: tuple[str, ...] = ()  # options of a smoke run: tiny sizes, no timing meaning
    timeout_s: float = 1800.0  # a run still going after this is interrupted and reported as failed

    @property
    def module(self) -> str:
        return f"bench.{self.name}"


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("preprocess_engines", smoke=("--rows", "20000", "--repeats", "1", "--warmup", "0")),
    Benchmark("train_throughput", args=("--threads", "1"),
              smoke=("--rows", "5000", "--epochs", "1", "--repeats", "1", "--warmup-rows", "1000", "--threads", "1")),
    Benchmark("mysql_sync", smoke=("--rows", "2000", "--single-rows", "100", "--repeats", "1")),
    Benchmark("kafka_producer", smoke=("--trips", "500", "--repeats", "1", "--warmup", "0")),
    Benchmark("lake_sink", smoke=("--events", "5000", "--batch-rows", "2000", "--timeout", "300")),
    Benchmark("tune_pool", smoke=("--trials", "2", "--rows", "3000", "--epochs", "1", "--repeats", "1")),
    Benchmark("endpoint", smoke=("--rates", "100", "--search-rates", "100", "--overhead-rate", "100",
                                 "--duration", "1", "--warmup", "0.5", "--targets", "100", "--rounds", "2")),
    Benchmark("load", smoke=("--rates", "50,200", "--duration", "1", "--warmup", "0.5", "--targets", "100")),
    Benchmark("stream", smoke=("--backlog", "1000", "--rate", "100", "--rate-seconds", "2",
                               "--real-time-trigger", "", "--timeout", "120")),
    # The stream at 50/s alone, then beside batch_training at nice 0 and at the platform's batch.cpu_nice.
    Benchmark("stream_training", smoke=("--quiet-seconds", "4", "--window", "4", "--nice", "10", "--trips", "4000",
                                        "--days", "2", "--trials", "1", "--epochs", "1", "--timeout", "120")),
    Benchmark("scaling", args=("--events", "100000"),
              smoke=("--events", "2000", "--repeats", "1", "--workers", "1,2", "--partitions", "1,3")),
)

# Run only when named (``python -m bench --only batch_scale``): too long for every ``make bench``.
OPT_IN: tuple[Benchmark, ...] = (
    # Months of 0.3M, 1M and 3M trips through batch_training's steps: 35 minutes on two cores (2026-12-04).
    Benchmark("batch_scale", smoke=("--sizes", "4k", "--days", "2", "--validate-concurrency", "2"), timeout_s=7200.0),
)

"""The pure part of the endpoint benchmark (``bench/endpoint.py``): interleaved rounds to the run that counts."""

from __future__ import annotations

from bench.endpoint import LoadResult, ServerRuns


def run(rate: float, p99: float, success: float = 1.0) -> LoadResult:
    return LoadResult(rate=rate, requests=1000, success=success, throughput=rate, p50_ms=p99 / 3, p90_ms=p99 / 2,
                      p99_ms=p99, max_ms=p99 * 2, mean_ms=p99 / 3, status_codes={"200": 1000}, errors=[])


def test_the_run_of_median_p99_counts_and_every_round_is_kept():
    runs = ServerRuns(load_average_1m=1.0, searched=True)
    for p99, cpu in ((9.0, 1.1), (30.0, 1.9), (4.0, 1.0)):  # a noisy middle round does not decide
        runs.add(500.0, run(500.0, p99), {"server_cpu_ms_per_request": cpu})
    runs.add(100.0, run(100.0, 3.0), {"server_cpu_ms_per_request": 2.0})
    assert runs.runs[500.0].p99_ms == 9.0 and runs.runs[100.0].p99_ms == 3.0
    runs.max_sustainable = runs.runs[500.0]
    out = runs.to_json()
    chosen = out["runs"]["500"]
    assert chosen["p99_ms"] == 9.0 and chosen["server_cpu_ms_per_request"] == 1.1  # its own CPU figure
    assert [r["p99_ms"] for r in chosen["rounds"]] == [9.0, 30.0, 4.0]
    assert out["max_sustainable"] == {"rate": 500.0, "throughput": 500.0, "p99_ms": 9.0}


def test_an_even_number_of_rounds_counts_the_lower_middle_run():
    runs = ServerRuns(load_average_1m=1.0)
    for p99 in (8.0, 2.0):
        runs.add(250.0, run(250.0, p99), {})
    assert runs.runs[250.0].p99_ms == 2.0 and "max_sustainable" not in runs.to_json()

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


def test_the_refinement_halves_the_gap_on_the_grid_and_stops_when_narrow():
    from bench.endpoint import bisect_rate

    assert bisect_rate(750.0, 1000.0, 25.0) == 875.0
    assert bisect_rate(875.0, 1000.0, 25.0) == 950.0  # 937.5 rounds up on the 25 grid
    assert bisect_rate(975.0, 1000.0, 25.0) is None  # no rate of the grid lies between
    assert bisect_rate(None, 100.0, 25.0) is None and bisect_rate(750.0, None, 25.0) is None


def test_a_refined_rate_moves_the_bounds_of_the_max_rate():
    from bench.endpoint import Bench

    class Fake:  # _measure stands in for vegeta: p99 grows past the limit above 900/s
        label = "s"

    bench = Bench(duration_s=1, warmup_s=0, p99_limit_ms=20.0, rounds=1, refine=3, resolution=25.0)
    bench._measure = lambda server, rate, runs, retry=False: (  # type: ignore[method-assign]
        r := run(rate, 10.0 if rate <= 900 else 40.0), None if retry else runs.add(rate, r, {}))[0]
    runs = ServerRuns(load_average_1m=0.0, searched=True)
    for rate in (500.0, 750.0, 1000.0):
        if not bench._step(Fake(), rate, runs):
            break
    assert (runs.held_rate, runs.failed_rate) == (750.0, 1000.0)
    for expected, holds in ((875.0, True), (950.0, False), (925.0, False)):  # a failing rate is tried twice
        probe = bisect_rate_of(runs)
        assert probe == expected
        assert bench._step(Fake(), probe, runs) is holds
    assert (runs.held_rate, runs.failed_rate) == (875.0, 925.0)
    assert runs.max_sustainable.rate == 875.0 and set(runs.retries) == {1000.0, 950.0, 925.0}
    assert bisect_rate_of(runs) == 900.0  # a fourth refinement would try 900


def bisect_rate_of(runs: ServerRuns) -> float | None:
    from bench.endpoint import bisect_rate

    return bisect_rate(runs.held_rate, runs.failed_rate, 25.0)

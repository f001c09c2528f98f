"""The pure part of the load test (``bench/load.py``): vegeta's results to a step, steps to a verdict."""

from __future__ import annotations

from bench.load import Step, summarize, verdict


def result(code: int, ms: float, second: int, retry_after: bool = True, error: str = "") -> dict:
    headers = {"Retry-After": ["1"]} if code == 503 and retry_after else {"Content-Type": ["application/json"]}
    return {"code": code, "latency": int(ms * 1e6), "timestamp": f"2026-01-05T08:30:0{second}.000000001Z",
            "headers": headers, "error": error}


def step(offered: float, codes: dict[str, int], p99: float, with_retry_after: int | None = None) -> Step:
    rejections = codes.get("503", 0)
    return Step(offered, sum(codes.values()), offered, codes.get("200", 0) / 10, p99 / 2, p99, p99 / 2, p99, codes,
                rejections, rejections if with_retry_after is None else with_retry_after,
                codes.get("0", 0), [], {"1": 100.0}, {"1": 101.0}, True)


def test_summarize_counts_codes_rejections_and_latencies():
    results = ([result(200, 2.0, s % 3) for s in range(97)] + [result(503, 0.5, 1), result(503, 0.4, 2, False)]
               + [result(0, 10_000.0, 2, error="timeout")])
    out = summarize(results, offered_rps=50, seconds=2.0)
    assert out["status_codes"] == {"200": 97, "503": 2, "0": 1}
    assert (out["rejections"], out["rejections_with_retry_after"], out["transport_errors"]) == (2, 1, 1)
    assert out["error_samples"] == ["timeout"]
    assert out["achieved_rps"] == 48.5
    assert out["ok_p50_ms"] == 2.0 and out["ok_p99_ms"] == 2.0
    assert out["p99_ms"] == 2.0 and out["p50_ms"] == 2.0  # transport errors carry no latency of an answer
    assert out["sent_rps"] == 49.5  # 100 requests over 2 s of send times


def test_verdict_finds_the_highest_step_held_and_describes_the_rest():
    steps = [step(100, {"200": 1000}, 8.0), step(200, {"200": 2000}, 15.0), step(300, {"200": 2999}, 18.0,),
             step(400, {"200": 3000, "503": 1000}, 40.0)]
    steps[2] = step(300, {"200": 2990, "503": 10}, 18.0)  # a rejection: not held, though p99 is within
    v = verdict(steps, p99_limit_ms=20.0)
    assert v["max_held_rps"] == 200 and v["first_failing_rps"] == 300
    assert [p["offered_rps"] for p in v["past_max"]] == [300, 400]
    assert v["past_max"][1]["rejected_share"] == 0.25 and v["past_max"][1]["other_errors"] == 0
    assert v["every_rejection_had_retry_after"] and v["no_transport_or_5xx_errors_besides_rejections"]
    assert not verdict([step(100, {"200": 10, "503": 2}, 5.0, with_retry_after=1)], 20.0)[
        "every_rejection_had_retry_after"]
    assert not verdict([step(100, {"200": 10, "500": 1}, 5.0)], 20.0)["no_transport_or_5xx_errors_besides_rejections"]
    assert verdict([step(100, {"200": 10}, 25.0)], 20.0)["max_held_rps"] is None

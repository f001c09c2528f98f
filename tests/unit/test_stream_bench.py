"""The pure part of the stream benchmark (``bench/stream.py``): which backlog round counts."""

from __future__ import annotations

from bench.stream import median_round


def test_the_backlog_of_median_throughput_counts_and_every_round_is_kept():
    rounds = [{"predicted": 20_000, "events_per_s": 6_800.0, "lake": "in"},
              {"predicted": 20_000, "events_per_s": 9_100.0, "lake": "out"},
              {"predicted": 20_000, "events_per_s": 7_400.0, "lake": "out"}]
    chosen = median_round(rounds)
    assert chosen["events_per_s"] == 7_400.0 and chosen["lake"] == "out"  # the whole middle round, not a mix
    assert chosen["rounds_events_per_s"] == [6_800.0, 9_100.0, 7_400.0]
    assert "rounds_events_per_s" not in rounds[2]  # the round itself is left as it was


def test_a_round_that_predicted_nothing_counts_as_slowest_and_an_even_count_takes_the_lower_middle():
    rounds = [{"predicted": 0, "events_per_s": None}, {"predicted": 100, "events_per_s": 50.0},
              {"predicted": 100, "events_per_s": 80.0}, {"predicted": 100, "events_per_s": 90.0}]
    assert median_round(rounds)["events_per_s"] == 50.0
    assert median_round(rounds[:1])["events_per_s"] is None

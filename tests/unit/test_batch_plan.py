"""What a batch_training run covers, and which errors fail its tasks at once."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from batch import pipeline
from core.lake import DataError, NoRawData


def test_days_back_or_an_explicit_range():
    assert pipeline.partition_days("2018-01-03", 3) == ["2018-01-01", "2018-01-02", "2018-01-03"]
    assert pipeline.partition_days("2018-01-31", 3, "2018-01-01") == [f"2018-01-{d:02d}" for d in range(1, 32)]
    assert pipeline.partition_days("2018-01-01", 9, "2018-01-01") == ["2018-01-01"]
    with pytest.raises(DataError, match="after end_date"):
        pipeline.partition_days("2018-01-01", 3, "2018-01-02")
    with pytest.raises(DataError, match="at most 366"):
        pipeline.partition_days("2019-12-31", 3, "2018-01-01")


def test_a_data_error_fails_at_once_and_anything_else_is_left_to_the_retries():
    def bad_data():
        raise NoRawData("no raw data for this day")

    with pytest.raises(AirflowFailException, match="NoRawData: no raw data for this day"):
        pipeline.fail_fast(bad_data)

    def s3_down():
        raise ConnectionError("S3 did not answer")

    with pytest.raises(ConnectionError):  # a service may come back: Airflow retries it
        pipeline.fail_fast(s3_down)
    assert pipeline.fail_fast(lambda x, y=1: x + y, 1, y=2) == 3

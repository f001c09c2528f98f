"""An unreachable S3 is reported in words, and S3A's retry budget comes from the typed settings."""

from __future__ import annotations

import pytest

from core.settings import Settings
from core.spark import StorageUnavailable, spark_conf, storage_errors, storage_unreachable_cause

# What Spark raised (as Py4JJavaError text) when a step read the lake with the S3 server stopped.
SPARK_TEXT = (
    "An error occurred while calling o93.parquet.\n"
    ": java.net.ConnectException: getFileStatus on s3a://lake/it/x/validated/trips/pickup_date=2026-09-14: "
    "software.amazon.awssdk.core.exception.SdkClientException: Unable to execute HTTP request: Connect to "
    "127.0.0.1:19000 [/127.0.0.1] failed: Connection refused (SDK Attempt Count: 2):    "
    "software.amazon.awssdk.core.exception.SdkClientException: Unable to execute HTTP request: Connect to "
    "127.0.0.1:19000 [/127.0.0.1] failed: Connection refused (SDK Attempt Count: 2): Connection refused\n"
    "\tat org.apache.hadoop.fs.s3a.impl.ErrorTranslation.wrapWithInnerIOE(ErrorTranslation.java:182)\n"
)


def test_the_connection_failure_is_found_in_sparks_text():
    assert storage_unreachable_cause(SPARK_TEXT) == "Connect to 127.0.0.1:19000 [/127.0.0.1] failed: Connection refused"


@pytest.mark.parametrize("text", [
    "[PATH_NOT_FOUND] Path does not exist: s3a://lake/raw/trips/pickup_date=2026-09-14.",
    "java.sql.SQLNonTransientConnectionException: Could not connect to address=(host=127.0.0.1)(port=13306)",
    "",
])
def test_other_failures_are_not_taken_for_an_s3_outage(text):
    assert storage_unreachable_cause(text) is None


def test_an_s3_outage_is_raised_in_words_naming_the_endpoint_and_the_budget(tmp_path):
    settings = Settings(runtime_dir=tmp_path, s3={"retry_limit": 2, "sdk_attempts": 1})
    with pytest.raises(StorageUnavailable) as err, storage_errors(settings, "preprocess"):
        raise RuntimeError(SPARK_TEXT)
    said = str(err.value)
    assert said.startswith("preprocess: the S3 server at http://127.0.0.1:19000 did not answer (Connect to ")
    assert "LAMBDAML_S3__RETRY_LIMIT=2" in said and "LAMBDAML_S3__SDK_ATTEMPTS=1" in said
    assert "lambdaml stack status" in said and "\n" not in said
    assert isinstance(err.value.__cause__, RuntimeError)


def test_any_other_error_passes_through_unchanged(tmp_path):
    with pytest.raises(ValueError, match="missing column"), storage_errors(Settings(runtime_dir=tmp_path), "validate"):
        raise ValueError("missing column(s) tpep_pickup_datetime")


def test_the_retry_budget_reaches_s3a(tmp_path):
    conf = spark_conf(Settings(runtime_dir=tmp_path, s3={"retry_limit": 3, "sdk_attempts": 2}))
    assert conf["spark.hadoop.fs.s3a.retry.limit"] == "3"
    assert conf["spark.hadoop.fs.s3a.attempts.maximum"] == "2"
    defaults = spark_conf(Settings(runtime_dir=tmp_path))
    assert (defaults["spark.hadoop.fs.s3a.retry.limit"], defaults["spark.hadoop.fs.s3a.attempts.maximum"]) == ("7", "5")

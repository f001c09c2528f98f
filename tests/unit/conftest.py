import pytest


@pytest.fixture(scope="session")
def local_spark():
    """A plain local Spark (no Hive, no S3, no jars) for pure transforms on tiny DataFrames."""
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[1]")
        .appName("lambdaml-unit")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()

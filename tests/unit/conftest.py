import os
import sys

import pytest


@pytest.fixture(scope="package")
def local_spark():
    """A plain local Spark (no Hive, no S3, no jars) for pure transforms on tiny DataFrames."""
    from pyspark.sql import SparkSession

    from core import jars
    from core.settings import PROJECT_ROOT, get_settings

    # The JVM outlives this session within one pytest process; give it the platform's
    # extra jars on its classpath so that integration sessions started later can use S3A.
    extra_cp = jars.classpath(get_settings(), "spark")
    # Python workers (mapInArrow) run this interpreter, with the platform's packages and modules.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))
    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.driver.extraClassPath", extra_cp)
        .appName("lambdaml-unit")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()

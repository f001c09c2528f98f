"""What ``core.spark.build_session`` adds to the configuration it is given."""


def test_java_options_go_after_the_configured_ones_for_driver_and_executors():
    from core.spark import with_java_options

    conf = {"spark.driver.extraJavaOptions": "-Dmine=1", "spark.master": "local[2]"}
    out = with_java_options(conf, " -XX:TieredStopAtLevel=1 ")
    assert out["spark.driver.extraJavaOptions"] == "-Dmine=1 -XX:TieredStopAtLevel=1"
    assert out["spark.executor.extraJavaOptions"] == "-XX:TieredStopAtLevel=1"
    assert out["spark.master"] == "local[2]" and conf["spark.driver.extraJavaOptions"] == "-Dmine=1"
    assert with_java_options(conf, "  ") == conf

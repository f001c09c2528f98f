-- A workload's predictions of one day (by event time) with their outcome, in the columns of its Hive table; the
-- day's bounds are filled in as literals (:day, :next_day), as Spark's JDBC query takes no parameters.
SELECT {prediction_select}, o.{outcome_time},
       CASE WHEN o.{key} IS NULL THEN NULL ELSE {label} END AS {actual}
FROM {predictions} p LEFT JOIN {outcomes} o ON o.{key} = p.{key}
WHERE p.{time} >= :day AND p.{time} < :next_day

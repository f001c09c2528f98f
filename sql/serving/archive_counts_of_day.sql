SELECT COUNT(*) AS predictions, COUNT(o.{key}) AS completed
FROM {predictions} p LEFT JOIN {outcomes} o ON o.{key} = p.{key}
WHERE p.{time} >= :day AND p.{time} < :next_day

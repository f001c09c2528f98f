DELETE o FROM {outcomes} o JOIN {predictions} p ON p.{key} = o.{key}
WHERE p.{time} >= :day AND p.{time} < :next_day

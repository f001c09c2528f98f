-- A touched key left with no prediction (its only prediction moved to another hour) leaves the view.
DELETE h FROM {hourly} h
JOIN sync_hour_keys k ON k.{group} = h.{group} AND k.hour_start = h.hour_start
WHERE NOT EXISTS (
  SELECT 1 FROM {predictions} p
  WHERE p.{group} = h.{group}
    AND p.{time} >= h.hour_start AND p.{time} < h.hour_start + INTERVAL 1 HOUR
)

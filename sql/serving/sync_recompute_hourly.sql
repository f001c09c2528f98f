-- Recomputed from the predictions (keyed by the request key, each with its actual label once known), so a
-- redelivery or a re-run never counts twice. The loss of a prediction: {loss}.
INSERT INTO {hourly}
  ({group}, hour_start, {count}, {sum_predicted}, {completed}, {sum_actual}, {sum_loss})
SELECT k.{group}, k.hour_start, COUNT(*), SUM(p.{prediction}), COUNT(p.{actual}),
       COALESCE(SUM(p.{actual}), 0), COALESCE(SUM({loss}), 0)
FROM sync_hour_keys k
JOIN {predictions} p
  ON p.{group} = k.{group}
 AND p.{time} >= k.hour_start AND p.{time} < k.hour_start + INTERVAL 1 HOUR
GROUP BY k.{group}, k.hour_start
ON DUPLICATE KEY UPDATE
  {count} = VALUES({count}), {sum_predicted} = VALUES({sum_predicted}), {completed} = VALUES({completed}),
  {sum_actual} = VALUES({sum_actual}), {sum_loss} = VALUES({sum_loss})

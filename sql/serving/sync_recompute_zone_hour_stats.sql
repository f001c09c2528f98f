-- Recomputed from the base tables (keyed by trip_id), so a redelivery or a re-run never counts twice.
INSERT INTO zone_hour_stats
  (pu_location_id, hour_start, trips, sum_predicted_s, completed, sum_actual_s, sum_abs_error_s)
SELECT k.pu_location_id, k.hour_start, COUNT(*), SUM(p.predicted_duration_s), COUNT(o.trip_id),
       COALESCE(SUM(o.duration_s), 0), COALESCE(SUM(ABS(o.duration_s - p.predicted_duration_s)), 0)
FROM sync_zone_hours k
JOIN predictions_recent p
  ON p.pu_location_id = k.pu_location_id
 AND p.pickup_ts >= k.hour_start AND p.pickup_ts < k.hour_start + INTERVAL 1 HOUR
LEFT JOIN trip_outcomes o ON o.trip_id = p.trip_id
GROUP BY k.pu_location_id, k.hour_start
ON DUPLICATE KEY UPDATE
  trips = VALUES(trips), sum_predicted_s = VALUES(sum_predicted_s), completed = VALUES(completed),
  sum_actual_s = VALUES(sum_actual_s), sum_abs_error_s = VALUES(sum_abs_error_s)

-- Live log loss by start dock: rides, completed, overtime rate, mean probability and log loss from bike_hourly.
-- Over the hours from `since` (default: the last 24 hours), docks with the most completed rides first.
-- Parameters: since (a date-time, e.g. 2026-06-03 00:00; default 24 hours ago); station (default: every dock).
SELECT start_station_id,
       SUM(rides) AS rides,
       SUM(completed) AS completed,
       SUM(sum_actual) / NULLIF(SUM(completed), 0) AS overtime_rate,
       SUM(sum_predicted) / NULLIF(SUM(rides), 0) AS mean_probability,
       SUM(sum_loss) / NULLIF(SUM(completed), 0) AS log_loss
FROM bike_hourly
WHERE hour_start >= COALESCE(:since, UTC_TIMESTAMP() - INTERVAL 24 HOUR)
  AND (:station IS NULL OR start_station_id = :station)
GROUP BY start_station_id
ORDER BY completed DESC, start_station_id

-- Recent error by pickup zone: trips, completed, MAE (s) from the real-time view.
-- Over the last `hours` hours of MySQL's zone x hour view, with mean predicted and actual duration (s),
-- zones with the most completed trips first.
-- Parameters: hours (default 24); zone (default: every zone).
SELECT pu_location_id,
       SUM(trips) AS trips,
       SUM(completed) AS completed,
       SUM(sum_abs_error_s) / NULLIF(SUM(completed), 0) AS mae_s,
       SUM(sum_predicted_s) / NULLIF(SUM(trips), 0) AS mean_predicted_s,
       SUM(sum_actual_s) / NULLIF(SUM(completed), 0) AS mean_actual_s
FROM zone_hour_stats
WHERE hour_start >= UTC_TIMESTAMP() - INTERVAL COALESCE(:hours, 24) HOUR
  AND (:zone IS NULL OR pu_location_id = :zone)
GROUP BY pu_location_id
ORDER BY completed DESC, pu_location_id

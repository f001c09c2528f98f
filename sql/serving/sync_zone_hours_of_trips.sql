-- Keys of trips already stored: a completion changes its trip's hour, a redelivered prediction may move it.
INSERT IGNORE INTO sync_zone_hours (pu_location_id, hour_start)
SELECT DISTINCT pu_location_id, CAST(DATE(pickup_ts) AS DATETIME) + INTERVAL HOUR(pickup_ts) HOUR
FROM predictions_recent
WHERE trip_id IN %s

INSERT INTO trip_outcomes (trip_id, dropoff_ts, duration_s)
VALUES (%s, %s, %s)
ON DUPLICATE KEY UPDATE dropoff_ts = VALUES(dropoff_ts), duration_s = VALUES(duration_s)

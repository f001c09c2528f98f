-- Each prediction carries its actual duration once the trip has completed.
UPDATE predictions_recent p
JOIN trip_outcomes o ON o.trip_id = p.trip_id
SET p.actual_duration_s = o.duration_s, p.completed_ts = o.dropoff_ts
WHERE p.trip_id IN %s

-- Live predictions of one model version scored in [start, end), with their outcome when it has arrived.
SELECT p.trip_id, p.pickup_ts, p.pu_location_id, p.do_location_id, p.passenger_count, p.trip_distance,
       p.predicted_duration_s, o.duration_s
FROM predictions_recent p
LEFT JOIN trip_outcomes o ON o.trip_id = p.trip_id
WHERE p.model_version = :version AND p.scored_ts >= :start AND p.scored_ts < :end

INSERT INTO predictions_recent
  (trip_id, model_version, pu_location_id, do_location_id, passenger_count, trip_distance, pickup_ts,
   predicted_duration_s, scored_ts, event_ts)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON DUPLICATE KEY UPDATE
  model_version = VALUES(model_version), pu_location_id = VALUES(pu_location_id),
  do_location_id = VALUES(do_location_id), passenger_count = VALUES(passenger_count),
  trip_distance = VALUES(trip_distance), pickup_ts = VALUES(pickup_ts),
  predicted_duration_s = VALUES(predicted_duration_s), scored_ts = VALUES(scored_ts), event_ts = VALUES(event_ts)

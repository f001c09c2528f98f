-- Live MAE per model version and minute of scoring, over the predictions whose outcome has arrived.
-- Minutes count from the Unix epoch (the DATETIME columns hold naive UTC).
SELECT p.model_version,
       TIMESTAMPDIFF(MINUTE, '1970-01-01', p.scored_ts) AS minute,
       AVG(ABS(p.predicted_duration_s - o.duration_s)) AS mae_s
FROM predictions_recent p
JOIN trip_outcomes o ON o.trip_id = p.trip_id
WHERE p.scored_ts >= :since AND p.model_version LIKE :versions
GROUP BY p.model_version, minute
ORDER BY minute

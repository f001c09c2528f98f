-- Model versions over time: predictions served and MAE per day and version.
-- Per day (UTC, by scoring time) and model version: predictions served, how many have an outcome,
-- their MAE (s), and the version's registry stage and promotion time.
-- Parameter: days (default 30, today included).
SELECT DATE(p.scored_ts) AS day,
       p.model_version,
       mv.stage,
       mv.promoted_at,
       COUNT(*) AS predictions,
       COUNT(o.trip_id) AS completed,
       AVG(ABS(o.duration_s - p.predicted_duration_s)) AS mae_s,
       MIN(p.scored_ts) AS first_scored,
       MAX(p.scored_ts) AS last_scored
FROM predictions_recent p
LEFT JOIN trip_outcomes o ON o.trip_id = p.trip_id
LEFT JOIN model_versions mv ON mv.version = p.model_version
WHERE p.scored_ts >= UTC_DATE() - INTERVAL (COALESCE(:days, 30) - 1) DAY
GROUP BY DATE(p.scored_ts), p.model_version, mv.stage, mv.promoted_at
ORDER BY day, first_scored

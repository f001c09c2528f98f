-- Predictions per model version and minute of scoring.
SELECT model_version,
       TIMESTAMPDIFF(MINUTE, '1970-01-01', scored_ts) AS minute,
       COUNT(*) AS predictions
FROM predictions_recent
WHERE scored_ts >= :since AND model_version LIKE :versions
GROUP BY model_version, minute
ORDER BY minute

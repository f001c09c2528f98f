-- Drift history: PSI per feature, live vs test MAE, breaches.
-- The drift reports whose window ended in the last `days` days, newest first.
-- Parameters: days (default 30); model_version (default: every version).
SELECT window_start,
       window_end,
       model_version,
       feature,
       psi,
       live_mae_s,
       test_mae_s,
       breached,
       created_at
FROM drift_reports
WHERE window_end >= UTC_TIMESTAMP() - INTERVAL COALESCE(:days, 30) DAY
  AND (:model_version IS NULL OR model_version = :model_version)
ORDER BY window_end DESC, feature

INSERT INTO model_version_counters (name, last_minor)
VALUES (:name, :floor)
ON DUPLICATE KEY UPDATE last_minor = GREATEST(last_minor + 1, :floor)

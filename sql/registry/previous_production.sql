SELECT version FROM model_versions
WHERE name = :name AND stage = 'archived' AND promoted_at IS NOT NULL AND version <> :current
ORDER BY promoted_at DESC
LIMIT 1

-- The latest versions of one model: when each was created and promoted, and its stage now.
SELECT version, stage, created_at, promoted_at
FROM model_versions
WHERE name = :model
ORDER BY created_at DESC
LIMIT :limit

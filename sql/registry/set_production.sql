UPDATE model_versions SET stage = 'production', promoted_at = CURRENT_TIMESTAMP(3) WHERE name = :name AND version = :version

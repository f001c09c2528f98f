SELECT COUNT(*) FROM model_versions WHERE name = :name

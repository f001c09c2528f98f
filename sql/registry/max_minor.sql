SELECT MAX(minor) FROM model_versions WHERE name = :name

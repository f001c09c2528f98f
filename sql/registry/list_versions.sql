SELECT name, version, stage, artifact_uri, sha256, metrics_json, params_json, data_partitions, data_objects,
       feature_spec, code_version, created_at, promoted_at
FROM model_versions
WHERE name = :name
ORDER BY created_at DESC, version DESC

INSERT INTO model_versions
  (name, version, stage, artifact_uri, sha256, metrics_json, params_json, data_partitions, feature_spec, code_version)
VALUES
  (:name, :version, :stage, :artifact_uri, :sha256, :metrics_json, :params_json, :data_partitions, :feature_spec, :code_version)
ON DUPLICATE KEY UPDATE
  artifact_uri = VALUES(artifact_uri), sha256 = VALUES(sha256), metrics_json = VALUES(metrics_json),
  params_json = VALUES(params_json), data_partitions = VALUES(data_partitions),
  feature_spec = VALUES(feature_spec), code_version = VALUES(code_version)

-- Live predictions of one model version scored in [start, end), with their label once the outcome has arrived.
SELECT {stored_columns}, p.{prediction} AS predicted,
       CASE WHEN o.{key} IS NULL THEN NULL ELSE {label} END AS actual
FROM {predictions} p
LEFT JOIN {outcomes} o ON o.{key} = p.{key}
WHERE p.model_version = :version AND p.scored_ts >= :start AND p.scored_ts < :end

-- Each prediction carries its actual label once the outcome has arrived ({label}).
UPDATE {predictions} p
JOIN {outcomes} o ON o.{key} = p.{key}
SET p.{actual} = {label}, p.{completed_ts} = o.{outcome_time}
WHERE p.{key} IN %s

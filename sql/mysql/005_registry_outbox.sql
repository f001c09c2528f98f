-- The registry's version numbers and announcements.
--
-- Version numbers come from a sequence, never from a count: model_version_counters
-- holds the last minor handed out per model name (its row lock serializes two
-- registrations), and the unique key on (name, minor) refuses a second row with
-- the same number. Existing rows get their minor from their version string
-- (name:1.<minor>.0-...); an old duplicate number (two racing registrations of
-- the count-based code) keeps its version string and a NULL minor.
--
-- model_announcements_outbox: a promotion or rollback writes the announcement
-- in the same transaction as the stage change; the relay publishes pending rows
-- in id order and sets published_at only after Kafka acknowledged them.

ALTER TABLE model_versions
  ADD COLUMN IF NOT EXISTS minor INT UNSIGNED NULL COMMENT 'N of the version 1.N.0, unique per name' AFTER version;

UPDATE IGNORE model_versions
  SET minor = CAST(SUBSTRING_INDEX(SUBSTRING_INDEX(SUBSTRING_INDEX(SUBSTRING(version, CHAR_LENGTH(name) + 2), '-', 1), '.', 2), '.', -1) AS UNSIGNED)
  WHERE minor IS NULL
    AND LEFT(version, CHAR_LENGTH(name) + 1) = CONCAT(name, ':')
    AND SUBSTRING_INDEX(SUBSTRING(version, CHAR_LENGTH(name) + 2), '-', 1) REGEXP '^[0-9]+[.][0-9]+[.][0-9]+$';

UPDATE model_versions v
  JOIN (SELECT name, version
        FROM (SELECT name, version,
                     ROW_NUMBER() OVER (PARTITION BY name, minor ORDER BY created_at, version) AS nth
              FROM model_versions WHERE minor IS NOT NULL) numbered
        WHERE nth > 1) later ON v.name = later.name AND v.version = later.version
  SET v.minor = NULL;

ALTER TABLE model_versions
  ADD UNIQUE KEY IF NOT EXISTS uq_model_versions_minor (name, minor);

CREATE TABLE IF NOT EXISTS model_version_counters (
  name       VARCHAR(64)  NOT NULL PRIMARY KEY,
  last_minor INT UNSIGNED NOT NULL COMMENT 'the last minor handed out; numbers are never reused',
  updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

INSERT IGNORE INTO model_version_counters (name, last_minor)
  SELECT name, MAX(minor) FROM model_versions WHERE minor IS NOT NULL GROUP BY name;

CREATE TABLE IF NOT EXISTS model_announcements_outbox (
  id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
  topic        VARCHAR(249) NOT NULL,
  msg_key      VARCHAR(64)  NOT NULL COMMENT 'the model name: the compaction key of the topic',
  value        JSON         NOT NULL COMMENT 'the announcement, byte for byte what is published',
  created_at   TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  published_at TIMESTAMP(3) NULL COMMENT 'set once Kafka acknowledged the record; NULL = pending',
  KEY ix_outbox_pending (topic, published_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

# Sourced once by the mariadb image's entrypoint, on an empty data directory.
# The image has already created MARIADB_DATABASE (lambda) and MARIADB_USER
# (lambdaml, all privileges on it). This adds what the platform also needs:
# the Hive metastore database (latin1, as Hive's own MySQL scripts use), the
# read-only analyst account and the Thrift Server's metastore login (SELECT
# only: the analysts' Hive tier cannot change the catalog). The platform's
# tables come from `lambdaml migrate` (the bootstrap step), not from here.
: "${LAMBDAML_MYSQL__ANALYST_PASSWORD:?the analyst password is missing from the secrets}"
: "${LAMBDAML_MYSQL__METASTORE_READER_PASSWORD:?the metastore reader password is missing from the secrets}"
analyst_password="$(docker_sql_escape_string_literal "${LAMBDAML_MYSQL__ANALYST_PASSWORD}")"
reader_password="$(docker_sql_escape_string_literal "${LAMBDAML_MYSQL__METASTORE_READER_PASSWORD}")"
docker_process_sql --database=mysql <<EOSQL
CREATE DATABASE IF NOT EXISTS \`metastore\` CHARACTER SET latin1;
GRANT ALL PRIVILEGES ON \`metastore\`.* TO '${MARIADB_USER}'@'%';
CREATE USER IF NOT EXISTS 'analyst'@'%' IDENTIFIED BY '${analyst_password}';
GRANT SELECT, SHOW VIEW ON \`${MARIADB_DATABASE}\`.* TO 'analyst'@'%';
CREATE USER IF NOT EXISTS 'hive_reader'@'%' IDENTIFIED BY '${reader_password}';
GRANT SELECT ON \`metastore\`.* TO 'hive_reader'@'%';
FLUSH PRIVILEGES;
EOSQL

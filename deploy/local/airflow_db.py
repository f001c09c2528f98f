"""Connection arguments of the local stack's Airflow metadata database (SQLite in ``$AIRFLOW_HOME``).

Airflow opens the file from the API server, the scheduler, the DAG processor and the triggerer at once.
SQLite lets one writer in at a time and, by default, makes the others give up after 5 s with
``database is locked``; the API server then answers 500. A longer busy timeout makes them wait their
turn instead. Airflow imports these dicts by name (``[database] sql_alchemy_connect_args``)."""

BUSY_TIMEOUT_S = 60.0

SYNC = {"timeout": BUSY_TIMEOUT_S}
ASYNC = {"timeout": BUSY_TIMEOUT_S}

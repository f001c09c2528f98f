"""Names of the Airflow assets that connect the layers (plain strings: DAG files import them at parse time)."""

DRIFT_ASSET_URI = "lambdaml://monitoring/trip_duration/drift"

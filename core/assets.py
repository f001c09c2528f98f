"""Names of the Airflow assets that connect the layers (plain strings: DAG files import them at parse time)."""


def drift_asset_uri(model_name: str) -> str:
    """The asset monitoring marks when a model's live inputs drift; that model's training DAG runs on it."""
    return f"lambdaml://monitoring/{model_name}/drift"


DRIFT_ASSET_URI = drift_asset_uri("trip_duration")  # the taxi model's, which monitoring watches today

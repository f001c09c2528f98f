"""Names of the Airflow assets that connect the layers (plain strings: DAG files import them at parse time)."""


def drift_asset_uri(model_name: str) -> str:
    """The asset a workload's monitoring marks when its model's live inputs drift; its training DAG runs on it."""
    return f"lambdaml://monitoring/{model_name}/drift"

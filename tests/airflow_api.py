"""Tests drive Airflow through the same REST client the demo uses."""

from deploy.local.airflow_api import AirflowAPI

__all__ = ["AirflowAPI"]

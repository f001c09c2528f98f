"""Shared fixtures. The integration and e2e suites bring the real local stack up
themselves (idempotently) and stop, at the end, only the services they started."""

from __future__ import annotations

import logging
import uuid

import pytest

from core.settings import Settings, get_settings


# py4j logs at INFO while the interpreter shuts down, after pytest closed its streams.
logging.getLogger("py4j").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings):
    from deploy.local.stack import Stack

    stack = Stack(settings)
    already = {s.name for s in stack.status() if s.healthy}
    stack.up()
    yield stack
    started = [s.name for s in stack.services if s.name not in already]
    if started:
        Stack(settings, only=started, with_dependencies=False).down()


@pytest.fixture(scope="session")
def spark(stack, settings: Settings):
    from pyspark.sql import SparkSession

    from core.spark import build_session

    # A plain session left by the unit tests would be reused by getOrCreate without our jars.
    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    session = build_session(settings, "lambdaml-tests")
    session.sparkContext.setLogLevel("WARN")
    yield session
    session.stop()


@pytest.fixture
def unique() -> str:
    """A short unique suffix so that tests never collide with each other or with real data."""
    return uuid.uuid4().hex[:10]

"""Every command's --help renders cleanly: no type placeholder after a flag (``<bool>``), nothing that reads
as if a flag took a value."""

from __future__ import annotations

import importlib
import re

import click
import pytest
import typer
from typer.testing import CliRunner

APPS = ["core.cli", "deploy.local.demo:cli", "serving.sync", "bench.runner", "bench.stream", "bench.endpoint",
        "bench.load", "bench.scaling", "bench.kafka_producer", "bench.lake_sink", "bench.mysql_sync",
        "bench.preprocess_engines", "bench.train_throughput", "bench.tune_pool", "bench.batch_scale",
        "bench.train_devices"]
# What a flag must not show: a type, as if it took a value (typer 0.29 printed `<bool>` after every flag).
PLACEHOLDER = re.compile(r"<bool>|\bBOOLEAN\b")


def _paths(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [path]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            if not sub.hidden:
                out += _paths(sub, (*path, name))
    return out


@pytest.mark.parametrize("module", APPS)
def test_help_renders_without_placeholders(module):
    name, _, attr = module.partition(":")
    app = getattr(importlib.import_module(name), attr or "app")
    command = typer.main.get_command(app)
    runner = CliRunner()
    for path in _paths(command):
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120", "NO_COLOR": "1"})
        assert result.exit_code == 0, (module, path, result.output)
        assert not PLACEHOLDER.search(result.output), (module, path, PLACEHOLDER.findall(result.output))
        assert "Usage:" in result.output

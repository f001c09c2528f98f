"""Workloads: one package each, ``workloads/<name>/``, the only place that knows its data (see ``core.workload``)."""

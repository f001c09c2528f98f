# The two README commands are `make demo` and `make test`; both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LAMBDAML := $(VENV)/bin/lambdaml
# uv (pinned, from PyPI) is fetched into ~/.cache/lambdaml/uv by deploy/local/bootstrap.py; its cache
# (~/.cache/uv) is shared by every clone.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: help install venv system jars demo test test-unit test-cluster bench test-integration test-e2e stack-up stack-status stack-down clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> Python environment ($(VENV))"
	@$(PYTHON) deploy/local/bootstrap.py --venv $(VENV)
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)  ## uv from PyPI (into ~/.cache/lambdaml/uv), then .venv with the Python packages (~6.6 GB, torch)

system: venv  ## apt-get what is missing: mariadb-server, JRE + JDK 17, maven, npm, haproxy, chromium
	@echo "==> Debian packages"
	@$(LAMBDAML) install --no-jars

jars: venv  ## Into ~/.cache/lambdaml: Kafka + Spark jars (Maven Central), S3 server (go install; Go from the Go proxy if none 1.25+), Thrift Server classes (javac), uPlot (npm)
	@echo "==> jars, S3 server, Thrift Server classes, uPlot (cached in $${LAMBDAML_CACHE_DIR:-$$HOME/.cache/lambdaml})"
	@$(LAMBDAML) install --no-system

install: venv system jars  ## Everything above (one line per step; tool output in .runtime/logs/install-*.log)

stack-up: install  ## Start the local stack
	@$(LAMBDAML) stack up

stack-status: venv  ## Show the local stack's health
	@$(LAMBDAML) stack status

stack-down: venv  ## Stop the local stack
	@$(LAMBDAML) stack down

demo: install  ## The whole loop on generated data, then a report (DEMO_ARGS="--help" for a bigger run)
	@$(VENV)/bin/python -m deploy.local.demo $(DEMO_ARGS)

test: install  ## Run every test: unit, integration and end-to-end on the real stack, then on the cluster profile
	@$(PY) -m pytest tests/unit
	@$(PY) -m pytest tests/integration tests/e2e -m "not cluster"
	@$(PY) -m pytest tests/e2e -m cluster

test-cluster: install  ## The cluster-profile end-to-end test (Spark standalone, 3 Kafka brokers, Ray cluster; long)
	@$(PY) -m pytest tests/e2e -m cluster

test-unit: venv  ## Unit tests only (no services)
	@$(PY) -m pytest tests/unit

bench: stack-up  ## Every benchmark beside its baseline; a dated JSON + table in bench/results/ (BENCH_ARGS="--help")
	@$(PY) -m bench $(BENCH_ARGS)

clean:  ## Stop the speed layer and the stack, and delete the runtime folder (keeps caches)
	-@test -x $(LAMBDAML) && $(LAMBDAML) speed down
	-@test -x $(LAMBDAML) && $(LAMBDAML) stack down
	rm -rf .runtime

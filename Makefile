# The two README commands are `make demo` and `make test`; both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
LAMBDAML := $(VENV)/bin/lambdaml
# uv is bootstrapped into the user's site; its cache (~/.cache/uv) is shared by every clone.
UV := $(PYTHON) -m uv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: help install venv system jars demo test test-unit test-cluster bench test-integration test-e2e stack-up stack-status stack-down clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo "==> python environment ($(VENV))"
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --user --quiet --disable-pip-version-check uv \
	  || $(PYTHON) -m pip install --user --quiet --disable-pip-version-check --break-system-packages uv
	@test -x $(PY) || $(UV) venv --quiet --python $(PYTHON) $(VENV)
	@$(UV) pip install --quiet --python $(PY) -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)  ## Create the virtual environment and install the Python packages

system: venv  ## Install missing Debian packages (MariaDB, JRE, JDK, Maven)
	@echo "==> Debian packages"
	@$(LAMBDAML) install --no-jars

jars: venv  ## Resolve the Kafka and Spark-extra jars from Maven Central, build the S3 server and the Thrift Server's classes
	@echo "==> jars"
	@$(LAMBDAML) install --no-system

install: venv system jars  ## Everything above

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

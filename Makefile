# mlcycle — `make run` then `make test` on a fresh machine with Python 3.11+ and make.
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: help venv run test test-postgres test-fast lint ui data clean server server-stop server-status db-upgrade airflow-check kfp-venv kfp-compile kfp-check spark-venv spark-check flaml-venv

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "mlcycle needs Python 3.11+, found " + sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install mlcycle with its dependencies

run: $(STAMP) ## run the whole pipeline on the default data (embedded sqlite store); ARGS="model=random_forest ..."
	$(BIN)/mlcycle train $(ARGS)

test: $(STAMP) ## run the test suite
	$(BIN)/python -m pytest $(ARGS)

test-postgres: $(STAMP) ## the tracking-server tests, on the project's PostgreSQL (started if needed)
	scripts/server.sh db-start
	scripts/server.sh db-create mlcycle_test
	MLCYCLE_TEST_POSTGRES_URI="$$(scripts/server.sh db-uri --with-password mlcycle_test)" MLCYCLE_REQUIRE_POSTGRES=1 \
		$(BIN)/python -m pytest -m postgres $(ARGS)

test-fast: $(STAMP) ## unit and integration tests only (no subprocess end-to-end tests)
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

lint: $(STAMP) ## ruff check
	$(BIN)/ruff check src tests benchmarks

ui: $(STAMP) ## the MLflow UI on http://127.0.0.1:5000, opened on the runs table; STORE=<uri> for another store
	$(BIN)/mlcycle ui $(if $(STORE),--tracking-uri '$(STORE)') $(ARGS)

server: $(STAMP) ## start PostgreSQL (.pgdata/) + mlflow server on http://127.0.0.1:5000; MLCYCLE_AUTH=1 for basic auth
	scripts/server.sh start

server-stop: ## stop the mlflow server and PostgreSQL
	scripts/server.sh stop

server-status: ## is the tracking server running?
	@scripts/server.sh status

db-upgrade: $(STAMP) ## after an MLflow upgrade: back up the tracking store, migrate it, compare row counts (team server: scripts/server.sh upgrade)
	$(BIN)/mlcycle db upgrade $(ARGS)

data: $(STAMP) ## write the default dataset to data/ecommerce.csv
	$(BIN)/mlcycle generate-data

airflow-check: $(STAMP) ## run orchestration/airflow_dag.py with real Airflow (own venv .venv-airflow, created if missing)
	scripts/check_airflow_dag.sh .venv-airflow

kfp-venv: $(STAMP) ## the Kubeflow Pipelines environment .venv-kfp (kfp + this checkout's mlcycle), if missing
	scripts/kfp_venv.sh .venv-kfp

kfp-compile: kfp-venv ## regenerate orchestration/kfp_pipeline.yaml + kfp_big_study.yaml (the shipped, default-image YAML)
	.venv-kfp/bin/python orchestration/kfp_pipeline.py

kfp-check: kfp-venv ## run both KFP pipelines for real with KFP's local runner (no cluster)
	scripts/check_kfp_pipeline.sh .venv-kfp

spark-venv: ## .venv-spark for `mlcycle predict --engine spark`: pyspark + mlcycle (editable); Java if missing
	scripts/spark_venv.sh .venv-spark

spark-check: $(STAMP) spark-venv ## the Spark scoring tests, for real (local[2]): Spark against pandas, spark_udf
	MLCYCLE_SPARK_VENV=$(CURDIR)/.venv-spark $(BIN)/python -m pytest -m spark $(ARGS)

flaml-venv: ## .venv-flaml for benchmarks/peer_automl.py (FLAML is never a dependency of mlcycle)
	test -x .venv-flaml/bin/python || $(PYTHON) -m venv .venv-flaml
	.venv-flaml/bin/python -m pip install --quiet 'flaml[automl]' pandas pyarrow

clean: ## remove run outputs (tracking store, artifacts, Hydra outputs); keeps .venv
	rm -rf mlflow.db mlflow.db.registry-*.lock .mlcycle mlartifacts mlruns outputs multirun data/retrain

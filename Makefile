# mlcycle — `make run` then `make test` on a fresh machine with Python 3.11+ and make.
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: help venv run test test-postgres test-fast lint ui data clean server server-stop server-status airflow-check spark-venv spark-check

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

ui: $(STAMP) ## open the MLflow UI on the embedded store (http://127.0.0.1:5000)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000

server: $(STAMP) ## start PostgreSQL (.pgdata/) + mlflow server on http://127.0.0.1:5000; MLCYCLE_AUTH=1 for basic auth
	scripts/server.sh start

server-stop: ## stop the mlflow server and PostgreSQL
	scripts/server.sh stop

server-status: ## is the tracking server running?
	@scripts/server.sh status

data: $(STAMP) ## write the default dataset to data/ecommerce.csv
	$(BIN)/mlcycle generate-data

airflow-check: $(STAMP) ## run orchestration/airflow_dag.py with real Airflow (own venv .venv-airflow, created if missing)
	scripts/check_airflow_dag.sh .venv-airflow

spark-venv: ## .venv-spark for `mlcycle predict --engine spark`: pyspark + mlcycle (editable); Java if missing
	scripts/spark_venv.sh .venv-spark

spark-check: $(STAMP) spark-venv ## the Spark scoring tests, for real (local[2]): Spark against pandas, spark_udf
	MLCYCLE_SPARK_VENV=$(CURDIR)/.venv-spark $(BIN)/python -m pytest -m spark $(ARGS)

clean: ## remove run outputs (tracking store, artifacts, Hydra outputs); keeps .venv
	rm -rf mlflow.db mlflow.db.registry-*.lock .mlcycle mlartifacts mlruns outputs multirun data/retrain

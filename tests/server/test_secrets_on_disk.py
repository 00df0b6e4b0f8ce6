"""No password is written anywhere a run writes: a pipeline logging straight to PostgreSQL with
the password in `mlflow.tracking_uri`, its Optuna study on PostgreSQL with the password in
`tune.storage`, and the same password in MLFLOW_TRACKING_PASSWORD. Every file under Hydra's
run and sweep folders (its record, the job logs, multirun.yaml), every artifact, the output,
and every text value in both databases is searched for it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from mlcycle.config.schema import STAGES
from tests.conftest import subprocess_env
from tests.server.harness import Postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
TINY = ["data.n_rows=400", "model=logistic_regression", "tune.n_trials=2", "tune.cv_folds=2", "evaluate.plots=false"]


def text_columns_holding(postgres: Postgres, database: str, needle: str) -> list[str]:
    """Every table.column of text type in ``database`` with a value containing ``needle``."""
    conn = postgres.connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND data_type IN ('text', 'character varying', 'character', 'json', 'jsonb', 'bytea')"
            )
            columns = cur.fetchall()
            found = []
            for table, column in columns:
                cur.execute(f'SELECT count(*) FROM "{table}" WHERE position(%s in "{column}"::text) > 0', (needle,))
                if cur.fetchone()[0]:
                    found.append(f"{table}.{column}")
            assert columns
            return found
    finally:
        conn.close()


def files_holding(folder: Path, needle: str) -> tuple[list[Path], int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return [p for p in files if needle.encode() in p.read_bytes()], len(files)


@pytest.mark.parametrize("sweep", [False, True], ids=["run", "multirun"])
def test_no_password_in_any_file_or_store_value_a_run_writes(postgres, new_database, tmp_path, sweep):
    store = new_database("secrets")
    study = new_database("secrets_study", mlflow=False)
    password = urlsplit(store).password
    usable = bool(password) and len(password) >= 8 and urlsplit(study).password == password
    assert usable  # (a bool: a failing comparison would print the password)
    root, start = tmp_path / "root", tmp_path / "start"
    start.mkdir()
    env = subprocess_env("", root)
    env.pop("MLFLOW_TRACKING_URI")
    env["MLFLOW_TRACKING_PASSWORD"] = password
    sweep_args = ["-m", "seed=1,2"] if sweep else []
    cmd = [sys.executable, "-m", "mlcycle", "train", *sweep_args, *TINY, f"mlflow.tracking_uri={store}",
           f"tune.storage={study}", "mlflow.artifact_location=artifacts", "hydra.job.chdir=true"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=start, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:].replace(password, "***")
    printed = password in proc.stdout + proc.stderr
    assert not printed  # (a bool: pytest would show the strings compared)

    hydra_dir = root / ("multirun" if sweep else "outputs")
    records = sorted(p.name for p in hydra_dir.rglob(".hydra/*.yaml"))
    assert records == sorted(["config.yaml", "hydra.yaml", "overrides.yaml"] * (2 if sweep else 1))
    assert "postgresql+psycopg2://" in next(hydra_dir.rglob(".hydra/config.yaml")).read_text()  # masked, not dropped
    if sweep:
        assert ":***@" in next(hydra_dir.rglob("multirun.yaml")).read_text()
    assert any(hydra_dir.rglob("*.log"))
    for folder in (root, start):  # Hydra's folders, the artifacts (start/artifacts), anything else
        leaked, searched = files_holding(folder, password)
        assert leaked == [] and searched > 0
    assert len([p for p in (start / "artifacts").rglob("MLmodel")]) == (2 if sweep else 1)

    store_db, study_db = urlsplit(store).path.lstrip("/"), urlsplit(study).path.lstrip("/")
    assert text_columns_holding(postgres, store_db, password) == []
    assert text_columns_holding(postgres, study_db, password) == []
    # the search does find values that are there
    assert text_columns_holding(postgres, store_db, "FINISHED") == ["runs.status"]
    assert "studies.study_name" in text_columns_holding(postgres, study_db, "mlcycle-logistic_regression")
    conn = postgres.connect(store_db)
    with conn.cursor() as cur:
        cur.execute("SELECT status, count(*) FROM runs GROUP BY status")
        statuses = dict(cur.fetchall())
    conn.close()
    pipelines = 2 if sweep else 1
    assert statuses == {"FINISHED": pipelines * (1 + len(STAGES) + 2)}

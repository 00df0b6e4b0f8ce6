from __future__ import annotations

import subprocess
import sys

from mlcycle.cli import expand_overrides


def test_overrides_parameter_is_split_and_later_values_win():
    args = ["model=hist_gradient_boosting", "data=ecommerce", "tune.n_trials=20", "--overrides", "data=csv data.path='/a b/c.csv' tune.n_trials=5"]
    assert expand_overrides(args) == ["model=hist_gradient_boosting", "data=csv", "data.path=/a b/c.csv", "tune.n_trials=5"]


def test_empty_overrides_and_flags_pass_through():
    assert expand_overrides(["-m", "model=a,b", "--overrides", ""]) == ["-m", "model=a,b"]
    assert expand_overrides(["+x=1", "+x=2"]) == ["+x=1", "+x=2"]


def test_help_does_not_import_mlflow():
    code = "import sys; from mlcycle.cli import main; main(['--help']); print('mlflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")


def test_unknown_command_is_an_error(capsys):
    from mlcycle.cli import main

    assert main(["bogus"]) == 2
    assert "unknown command 'bogus'" in capsys.readouterr().err


def test_generate_data_writes_the_default_dataset(tmp_path):
    import pandas as pd

    from mlcycle.cli import main

    out = tmp_path / "sessions.csv"
    assert main(["generate-data", "--rows", "300", "--seed", "5", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 300
    assert {"session_id", "tenure_days", "device", "product_category", "purchased"} <= set(frame.columns)
    assert main(["generate-data", "--rows", "300", "--seed", "5", "--out", str(tmp_path / "s.parquet")]) == 0
    assert len(pd.read_parquet(tmp_path / "s.parquet")) == 300

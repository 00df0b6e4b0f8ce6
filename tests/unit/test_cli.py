from __future__ import annotations

import subprocess
import sys

from mlcycle.cli import normalize


def test_overrides_parameter_is_split_and_later_values_win():
    args = ["model=hist_gradient_boosting", "data=ecommerce", "tune.n_trials=20", "--overrides", "data=csv data.path='/a b/c.csv' tune.n_trials=5"]
    assert normalize(args) == ["model=hist_gradient_boosting", "data=csv", "data.path=/a b/c.csv", "tune.n_trials=5"]
    assert normalize(["--overrides=a=1 b=2", "a=3"]) == ["b=2", "a=3"]


def test_empty_overrides_and_flags_pass_through():
    assert normalize(["-m", "model=a,b", "--overrides", ""]) == ["-m", "model=a,b"]
    assert normalize(["+x=1", "+x=2"]) == ["+x=1", "+x=2"]


def test_mlproject_parameters_empty_values_are_dropped_and_switches_follow_their_value():
    """`mlflow run` passes every declared parameter: empty means "not given", true/false a switch."""
    args = ["--version=", "--alias=challenger", "--force=false", "--reason=", "--overrides", ""]
    assert normalize(args) == ["--alias=challenger"]
    assert normalize(["--force=true", "--alias=challenger"]) == ["--force", "--alias=challenger"]
    assert normalize(["--version=3", "--alias=challenger", "--force=false"]) == ["--version=3", "--alias=challenger"]
    assert normalize(["--input=a.csv", "--model-uri=", "--on-bad-rows=skip"]) == ["--input=a.csv", "--on-bad-rows=skip"]


def test_cache_shorthand():
    assert normalize(["model=random_forest", "cache=false", "cache=True"]) == ["model=random_forest", "cache.enabled=true"]
    assert normalize(["cache=false"]) == ["cache.enabled=false"]


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


def test_result_file_is_an_option_of_train_not_an_override(capsys):
    """`--result-file` is taken out before Hydra sees argv; it describes one run."""
    from mlcycle.commands import _common
    from mlcycle.commands import train as train_cmd

    assert _common.pop_result_file(["a=1", "--result-file", "out.json", "b=2"]) == ("out.json", ["a=1", "b=2"])
    assert _common.pop_result_file(["--result-file=out.json"]) == ("out.json", [])
    assert train_cmd.main(["-m", "model=logistic_regression,random_forest", "--result-file", "out.json"]) == 2
    assert "--result-file describes one run" in capsys.readouterr().err
    assert train_cmd.main(["--result-file"]) == 2
    assert "--result-file needs a path" in capsys.readouterr().err

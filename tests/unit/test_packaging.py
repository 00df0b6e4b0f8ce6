"""One place for dependency pins: conda.yaml must mirror pyproject.toml exactly."""

from __future__ import annotations

import tomllib

import yaml

from tests.conftest import PROJECT_ROOT


def test_conda_yaml_pins_equal_pyproject_dependencies():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    conda = yaml.safe_load((PROJECT_ROOT / "conda.yaml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    assert sorted(pip_section) == sorted(project["dependencies"])
    python = next(d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert project["requires-python"] == ">=" + python.split("=")[1]


def test_mlproject_main_entry_point_declares_the_documented_parameters():
    mlproject = yaml.safe_load((PROJECT_ROOT / "MLproject").read_text())
    assert mlproject["conda_env"] == "conda.yaml"
    main = mlproject["entry_points"]["main"]
    assert {"model", "data", "n_trials", "overrides"} <= set(main["parameters"])
    for name in ("model", "data", "n_trials"):
        assert "{" + name + "}" in main["command"]
    assert "--overrides {overrides}" in main["command"]


def test_run_outputs_are_ignored_by_git():
    ignored = (PROJECT_ROOT / ".gitignore").read_text().split()
    for entry in ("mlflow.db", "mlruns/", "mlartifacts/", "outputs/", "multirun/"):
        assert entry in ignored

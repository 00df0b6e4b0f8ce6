"""Compose every option of every config group; bad values fail at compose time."""

from __future__ import annotations

import pytest

from mlcycle.config.load import flatten, project_root
from mlcycle.config.paths import absolute_uri
from mlcycle.config.schema import STAGES, Config
from mlcycle.errors import ConfigError
from tests.conftest import PROJECT_ROOT, compose


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (PROJECT_ROOT / "conf" / group).glob("*.yaml"))


def test_every_group_has_options():
    for group in ("data", "model", "tune", "preprocess", "features", "evaluate", "registry", "mlflow", "paths", "experiment"):
        assert options(group), group


@pytest.mark.parametrize("group", ["data", "model", "tune", "preprocess", "features", "evaluate", "registry", "mlflow", "paths", "experiment"])
def test_every_option_composes(group):
    for option in options(group):
        extra = ["data.path=/tmp/x.csv", "data.target=y"] if (group, option) == ("data", "csv") else []
        cfg = compose([f"{group}={option}", *extra])
        assert isinstance(cfg, Config)


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("data", ["ecommerce", "breast_cancer", "wine", "diabetes"])
def test_models_combine_with_datasets(model, data):
    cfg = compose([f"model={model}", f"data={data}"])
    assert cfg.model.name == model
    for family in cfg.model.families.values() or [cfg.model]:  # model=auto: a search over families
        for spec in (family.classifier, family.regressor):
            assert spec.estimator.startswith("sklearn.") and spec.search_space


def test_auto_searches_the_shipped_families_with_their_own_spaces():
    cfg = compose(["model=auto"])
    assert list(cfg.model.families) == ["hist_gradient_boosting", "random_forest", "extra_trees", "logistic_regression"]
    assert not cfg.model.classifier.estimator and not cfg.model.regressor.estimator
    alone = compose(["model=random_forest"]).model.classifier
    family = cfg.model.families["random_forest"].classifier
    assert family.search_space == alone.search_space and family.estimator == alone.estimator  # the family's own file
    assert family.params == {**alone.params, "n_estimators": 60}  # cheaper forests in a search over families
    assert cfg.model.ensemble.enabled and cfg.model.ensemble.rounds == 10  # the families' bests, then their vote
    assert not compose(["model=random_forest"]).model.ensemble.enabled  # one family: nothing to ensemble
    assert list(compose(["model=auto", "~model.families.extra_trees"]).model.families) == [
        "hist_gradient_boosting", "random_forest", "logistic_regression"]


def test_defaults_and_paths_are_absolute():
    cfg = compose()
    assert cfg.stages == list(STAGES)
    assert cfg.data.name == "ecommerce" and cfg.model.name == "auto"  # a search over families (issue 18)
    assert cfg.mlflow.tracking_uri == f"sqlite:///{project_root()}/mlflow.db"
    assert cfg.mlflow.artifact_location.startswith("/")
    assert cfg.registry.model_name == "mlcycle-ecommerce"
    assert cfg.data.seed == cfg.seed == cfg.tune.seed


def test_experiment_quick_is_a_delta():
    cfg = compose(["experiment=quick"])
    assert cfg.data.n_rows == 3000 and cfg.tune.n_trials == 5


@pytest.mark.parametrize(
    "override",
    ["tune.n_trials=abc", "tune.bogus=1", "model=nope", "preprocess.clip=sometimes", "data.split.train=x",
     "tune.trial_writer=sometimes", "tune.sampler=grid", "preprocess.impute_numeric=mode"],
)
def test_bad_overrides_fail_at_compose_time_in_one_line_naming_the_override(override):
    with pytest.raises(ConfigError) as raised:
        compose([override])
    message = str(raised.value)
    assert "\n" not in message and override.split("=")[0].split("/")[0] in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.split.train=0.9"], "sum to 1"),
        (["tune.n_trials=0"], "at least 1"),
        (["tune.blas_threads=0"], "tune.blas_threads must be at least 1 or null, got 0"),
        (["stages=[ingest,bogus]"], "unknown stage"),
        (["data=csv", "data.target=y", "data.path=null"], "data.path is required"),
        (["preprocess.impute_numeric=mode"], r"preprocess.impute_numeric=mode.*one of \[median, mean\]"),
        (["model=auto", "model.ensemble.rounds=0"], "model.ensemble.rounds must be at least 1"),
    ],
)
def test_semantic_validation(overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(overrides)


def test_flatten_gives_string_params():
    flat = flatten(compose())
    assert flat["tune.n_trials"] == "20"
    assert flat["preprocess.clip"] == "iqr"
    assert flat["model.families.hist_gradient_boosting.classifier.search_space.learning_rate.log"] == "True"
    assert all(isinstance(v, str) for v in flat.values())


def test_user_paths_are_made_absolute_against_the_start_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose([
        "data=csv", "data.path=in/my.csv", "data.target=y", "mlflow.tracking_uri=sqlite:///rel.db",
        "mlflow.artifact_location=arts", "tune.storage=sqlite:///study.db", "registry.lock.path=locks/x.lock",
    ])
    assert cfg.data.path == str(tmp_path / "in" / "my.csv")
    assert cfg.mlflow.tracking_uri == f"sqlite:///{tmp_path}/rel.db"
    assert cfg.mlflow.artifact_location == str(tmp_path / "arts")
    assert cfg.tune.storage == f"sqlite:///{tmp_path}/study.db"
    assert cfg.registry.lock.path == str(tmp_path / "locks" / "x.lock")
    elsewhere = compose(["mlflow.tracking_uri=http://127.0.0.1:5000", "mlflow.artifact_location=s3://b/a",
                         "tune.storage=postgresql+psycopg2://u@h/db"])
    assert (elsewhere.mlflow.tracking_uri, elsewhere.mlflow.artifact_location, elsewhere.tune.storage) == (
        "http://127.0.0.1:5000", "s3://b/a", "postgresql+psycopg2://u@h/db")
    assert absolute_uri("sqlite:///a.db?timeout=5", tmp_path) == f"sqlite:///{tmp_path}/a.db?timeout=5"
    assert absolute_uri("sqlite:///:memory:", tmp_path) == "sqlite:///:memory:"
    assert absolute_uri("sqlite:////abs/a.db", tmp_path) == "sqlite:////abs/a.db"

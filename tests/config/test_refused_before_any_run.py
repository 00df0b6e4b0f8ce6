"""Config mistakes that used to pass composition and fail later (or never): an unknown key
added with `+`, an estimator parameter scikit-learn refuses when fitting, a registered model
name MLflow refuses when registering. Each is one ConfigError line naming the key."""

from __future__ import annotations

import pytest

from mlcycle.config.load import compose as compose_config
from mlcycle.core import modeling
from mlcycle.errors import ConfigError
from tests.conftest import compose


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+typo=1", "unknown config key 'typo'; known keys: seed, threads_per_fit, stages, paths, data"),
        ("+tune.n_trial=3", "unknown config key 'tune.n_trial' (did you mean 'tune.n_trials'?)"),
        ("+data.split.valid=0.1", "unknown config key 'data.split.valid' (did you mean 'data.split.validation'?)"),
        ("+registry.gate.treshold=1", "unknown config key 'registry.gate.treshold' (did you mean 'registry.gate.thresholds'?)"),
    ],
)
def test_an_added_unknown_key_is_refused_with_the_nearest_known_one(override, message):
    with pytest.raises(ConfigError) as raised:
        compose([override])
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)


def test_unknown_keys_are_refused_by_the_monitor_config_too():
    with pytest.raises(ConfigError, match=r"unknown config key 'batch.pth' \(did you mean 'batch.path'\?\)"):
        compose_config(["+batch.pth=x"], config_name="monitor")


def test_open_dicts_still_take_new_keys():
    cfg = compose(["+mlflow.tags.team=growth", "+model.families.hist_gradient_boosting.classifier.params.max_depth=3",
                   "+data.column_types.x=numeric"])
    assert cfg.mlflow.tags == {"team": "growth"}
    assert cfg.model.families["hist_gradient_boosting"].classifier.params["max_depth"] == 3
    assert compose(["model=random_forest", "+model.classifier.params.max_depth=3"]).model.classifier.params["max_depth"] == 3


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=logistic_regression", "model.classifier.params.max_iter=-5"],
         "model.classifier.params: The 'max_iter' parameter of LogisticRegression must be an int in the range [0, inf). Got -5 instead."),
        (["model=hist_gradient_boosting", "+model.classifier.params.bogus=3"],
         "model.classifier.params.bogus: HistGradientBoostingClassifier has no parameter 'bogus'; it has: categorical_features,"),
        (["model=hist_gradient_boosting", "+model.regressor.params.max_iterr=3"],
         "model.regressor.params.max_iterr: HistGradientBoostingRegressor has no parameter 'max_iterr' (did you mean 'max_iter'?)"),
        (["model=logistic_regression", "model.classifier.search_space.C.low=-1"],
         "model.classifier.search_space.C.low: The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]"),
        (["model=random_forest", "model.classifier.search_space.max_features.high=2.5"],
         "model.classifier.search_space.max_features.high: The 'max_features' parameter of RandomForestClassifier"),
        (["model=logistic_regression", "model.classifier.search_space.class_weight.choices=[null,weird]"],
         "model.classifier.search_space.class_weight.choices: The 'class_weight' parameter of LogisticRegression"),
        (["model=hist_gradient_boosting", "+model.classifier.search_space.depth={type:int,low:1,high:3}"],
         "model.classifier.search_space.depth: HistGradientBoostingClassifier has no parameter 'depth'"),
        (["model=hist_gradient_boosting", "model.regressor.estimator=sklearn.nope.Model"], "model.regressor.estimator: cannot import estimator class 'sklearn.nope.Model'"),
        (["model=hist_gradient_boosting", "model.classifier.estimator=pandas.DataFrame"], "model.classifier.estimator: pandas.DataFrame is not a scikit-learn estimator"),
        (["model=auto", "model.families.random_forest.classifier.params.n_estimators=0"],
         "model.families.random_forest.classifier.params: The 'n_estimators' parameter of RandomForestClassifier"),
        (["model=auto", "+model.families.extra_trees.classifier.search_space.depth={type:int,low:1,high:3}"],
         "model.families.extra_trees.classifier.search_space.depth: ExtraTreesClassifier has no parameter 'depth'"),
        (["model=auto", "model.families.hist_gradient_boosting.classifier.start.learning_rate=-1"],
         "model.families.hist_gradient_boosting.classifier.start.learning_rate: The 'learning_rate' parameter of HistGradientBoostingClassifier"),
        (["model=random_forest", "model.regressor.start.max_depth=7.5"],
         "model.regressor.start.max_depth: The 'max_depth' parameter of RandomForestRegressor must be an int"),
        (["model=logistic_regression", "model.classifier.start.class_weight=weird"],
         "model.classifier.start.class_weight: The 'class_weight' parameter of LogisticRegression"),
        (["model=logistic_regression", "+model.classifier.start.tol=0.1"],
         "model.classifier.start.tol: 'tol' is not in the search space"),
    ],
)
def test_estimator_parameters_are_checked_by_scikit_learn_before_any_run(overrides, message):
    cfg = compose(overrides)  # composes: an open dict of params
    with pytest.raises(ConfigError) as raised:
        modeling.check_model(cfg.model)
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("model", ["hist_gradient_boosting", "random_forest", "extra_trees", "logistic_regression", "auto"])
def test_the_shipped_models_pass_the_check(model):
    modeling.check_model(compose([f"model={model}"]).model)


NAMES = ["../../x", "a/b", "a:b", "", " ", ".", "..", "..x", "x..", "a.b", "ok-name", "name with space", "a\\b", "50%", "ünï"]


@pytest.mark.parametrize("name", NAMES)
def test_registered_model_names_follow_mlflow_s_own_rule(name):
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_model_name

    try:
        _validate_model_name(name)
        mlflow_accepts = True
    except MlflowException:
        mlflow_accepts = False
    try:
        compose([f"registry.model_name='{name}'"])
        accepted = True
    except ConfigError as exc:
        assert str(exc).startswith("registry.model_name must be a registered model name"), str(exc)
        accepted = False
    assert accepted == mlflow_accepts


@pytest.mark.parametrize("alias", ["champion", "prod_2", "a-b", "latest", "LATEST", "v3", "has space", "x/y", ""])
def test_aliases_follow_mlflow_s_own_rule(alias):
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import (
        _validate_model_alias_name,
        _validate_model_alias_name_reserved,
    )

    try:
        _validate_model_alias_name(alias)
        _validate_model_alias_name_reserved(alias)
        mlflow_accepts = True
    except MlflowException:
        mlflow_accepts = False
    try:
        compose([f"registry.champion_alias='{alias}'"])
        accepted = True
    except ConfigError:
        accepted = False
    assert accepted == mlflow_accepts


def test_the_monitor_refuses_a_model_name_mlflow_would_refuse():
    with pytest.raises(ConfigError, match=r"monitor.model_name must be a registered model name.*got '\.\./x'"):
        compose_config(["monitor.model_name=../x"], config_name="monitor")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.threshold.cost_fp=-1", "model.threshold.cost_fp must be positive, got -1"),
        ("model.threshold.cost_fn=0", "model.threshold.cost_fn must be positive, got 0"),
        ("model=random_forest model.classifier.estimator=", "model 'random_forest': model.classifier.estimator and model.regressor.estimator are required"),
        ("model.threshold.objective=recall", "Error merging override model.threshold.objective=recall: Invalid value 'recall', expected one of [f1, cost, none]"),
    ],
)
def test_a_bad_threshold_or_model_setting_is_one_line_before_any_run(override, message):
    with pytest.raises(ConfigError) as raised:
        compose(override.split())
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.classifier.params.max_iter=300", "Could not override 'model.classifier.params.max_iter'"),
        ("model.regressor.search_space.learning_rate.high=0.2", "Could not override 'model.regressor.search_space.learning_rate.high'"),
        ("+model.classifier.params.max_iter=300", "model.classifier.params is not used"),  # would be ignored
        ("+model.regressor.start.learning_rate=0.05", "model.regressor.start is not used"),
    ],
)
def test_a_single_family_setting_under_the_default_search_over_families_says_where_it_goes(override, message):
    """model=auto (the default since issue 18) has no model.classifier of its own: a setting
    written for one family is refused, never silently ignored, and the line says where it goes."""
    with pytest.raises(ConfigError) as raised:
        compose([override])
    text = str(raised.value)
    assert text.startswith(message) and "model.families.<family>.classifier" in text and "model=hist_gradient_boosting" in text, text
    assert "\n" not in text
    assert compose(["model=hist_gradient_boosting", override.lstrip("+")]).model.name == "hist_gradient_boosting"


def test_a_typo_inside_a_family_of_auto_is_refused():
    with pytest.raises(ConfigError, match=r"^unknown config key 'model.families.random_forest.typo'; known keys in "
                                          r"model.families.random_forest: name,"):
        compose(["model=auto", "+model.families.random_forest.typo=1"])


def test_auto_with_an_estimator_of_its_own_is_refused():
    with pytest.raises(ConfigError, match=r"^model 'auto': either model.families .* not both$"):
        compose(["model=auto", "model.classifier.estimator=sklearn.tree.DecisionTreeClassifier"])

"""Estimators, the model Pipeline and cross-validation. Pure: no mlflow, no hydra."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import VotingClassifier, VotingRegressor
from sklearn.model_selection import KFold, StratifiedKFold, TimeSeriesSplit
from sklearn.pipeline import Pipeline

from mlcycle.config.schema import EstimatorSpec, ModelConfig, PreprocessConfig, Task
from mlcycle.core.cleaning import TabularCleaner
from mlcycle.core.data import Schema
from mlcycle.core.evaluation import score, score_predictions
from mlcycle.core.features import DerivedFeatures, FeaturePlan, build_encoder
from mlcycle.errors import ConfigError, first_line

FAMILY_PARAM = "family"  # model=auto: the trial parameter that picks the family
# model=auto's ensemble: the best parameters' key holding its members ([{"params": a trial's
# parameters, "weight": n}]); also the family name it is logged and tagged as
ENSEMBLE = "ensemble"


def estimator_spec(model: ModelConfig, task: Task) -> EstimatorSpec:
    return model.regressor if task is Task.regression else model.classifier


def families(model: ModelConfig, task: Task) -> dict[str, EstimatorSpec]:
    """The estimator families a model searches, by name: its own (``model=random_forest``:
    one), or ``model.families`` (``model=auto``)."""
    if model.families:
        return {name: estimator_spec(family, task) for name, family in model.families.items()}
    return {model.name: estimator_spec(model, task)}


def prefixed(family: str) -> str:
    """How a family's parameters are named in a search over several families: each family
    keeps its own distributions (``random_forest.max_depth``, ``extra_trees.max_depth``)."""
    return f"{family}."


def configuration(specs: dict[str, EstimatorSpec], params: dict[str, Any]) -> tuple[str, EstimatorSpec, dict[str, Any]]:
    """A trial's (or the best) parameters as ``(family, its spec, the estimator's own params)``."""
    if len(specs) == 1:
        (name, spec), = specs.items()
        return name, spec, dict(params)
    name = params[FAMILY_PARAM]
    prefix = prefixed(name)
    return name, specs[name], {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


class Model(NamedTuple):
    """What the best parameters describe: the family (or ENSEMBLE), the estimator's import
    path, the estimator (unfitted) and its parameters to log."""

    family: str
    estimator_name: str
    estimator: BaseEstimator
    params: dict[str, Any]


def best_family(specs: dict[str, EstimatorSpec], params: dict[str, Any]) -> str:
    return ENSEMBLE if ENSEMBLE in params else configuration(specs, params)[0]


def build_model(specs: dict[str, EstimatorSpec], params: dict[str, Any], task: Task, seed: int) -> Model:
    """The estimator of the best parameters: one family's configuration, or (``ENSEMBLE``)
    scikit-learn's soft ``VotingClassifier`` / ``VotingRegressor`` of its members, weighted
    by their counts in the greedy selection (core/tuning/ensemble.py)."""
    if ENSEMBLE not in params:
        family, spec, own = configuration(specs, params)
        return Model(family, spec.estimator, build_estimator(spec, own, seed), own)
    members, weights, logged = [], [], {}
    for member in params[ENSEMBLE]:
        family, spec, own = configuration(specs, member["params"])
        members.append((family, build_estimator(spec, own, seed)))
        weights.append(member["weight"])
        logged |= {f"{family}.weight": member["weight"], **{f"{family}.{k}": v for k, v in own.items()}}
    if task is Task.regression:
        vote = VotingRegressor(members, weights=weights)
    else:
        vote = VotingClassifier(members, voting="soft", weights=weights)
    cls = type(vote)
    return Model(ENSEMBLE, f"sklearn.ensemble.{cls.__name__}", vote, logged)


def estimator_class(spec: EstimatorSpec) -> type:
    module_name, _, class_name = spec.estimator.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"cannot import estimator class {spec.estimator!r}") from None


def build_estimator(spec: EstimatorSpec, params: dict[str, Any] | None, seed: int) -> BaseEstimator:
    """Instantiate ``spec.estimator`` with its defaults, then ``params``, seeded when it can be."""
    estimator = estimator_class(spec)(**{**dict(spec.params), **dict(params or {})})
    if "random_state" in estimator.get_params():
        estimator.set_params(random_state=seed)
    return estimator


def check_model(model: ModelConfig) -> None:
    """Refuse, before any run, an estimator setting the estimator itself would refuse when
    fitted: an unknown parameter name, or a value outside scikit-learn's declared constraints
    (``_parameter_constraints``), in ``params`` or at a bound or choice of the search space.
    Raises ConfigError with one line naming the key (``model=auto``: each family's)."""
    for name, family in model.families.items():
        _check_family(family, f"model.families.{name}")
    if not model.families:
        _check_family(model, "model")


def _check_family(model: ModelConfig, where: str) -> None:
    for role in ("classifier", "regressor"):
        spec: EstimatorSpec = getattr(model, role)
        key = f"{where}.{role}"
        try:
            cls = estimator_class(spec)
        except ValueError as exc:
            raise ConfigError(f"{key}.estimator: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):
            raise ConfigError(f"{key}.estimator: {spec.estimator} is not a scikit-learn estimator")
        names = cls._get_param_names()
        fixed = dict(spec.params)
        for part, values in (("params", fixed), ("search_space", spec.search_space)):
            for name in values:
                if name not in names:
                    close = difflib.get_close_matches(name, names, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else f"; it has: {', '.join(names)}"
                    raise ConfigError(f"{key}.{part}.{name}: {cls.__name__} has no parameter {name!r}{hint}")
        _validate(cls, fixed, f"{key}.params")
        for name, space in spec.search_space.items():
            if space.get("type") == "categorical":
                probes = [("choices", choice) for choice in space.get("choices") or []]
            else:
                probes = [("low", space.get("low")), ("high", space.get("high"))]
            for bound, value in probes:
                _validate(cls, {**fixed, name: value}, f"{key}.search_space.{name}.{bound}")
        for name, value in spec.start.items():
            if name not in spec.search_space:
                raise ConfigError(f"{key}.start.{name}: {name!r} is not in the search space (start sets searched parameters only)")
            _validate(cls, {**fixed, name: value}, f"{key}.start.{name}")


def _validate(cls: type, params: dict[str, Any], key: str) -> None:
    """scikit-learn's own validation of the parameters, the first thing its ``fit`` does."""
    try:
        estimator = cls(**params)
        if hasattr(estimator, "_parameter_constraints"):
            estimator._validate_params()
    except (TypeError, ValueError) as exc:  # InvalidParameterError is both
        raise ConfigError(f"{key}: {first_line(exc)}") from None


def cleaner_for(schema: Schema, preprocess: PreprocessConfig) -> TabularCleaner:
    """The cell-level cleaner the preprocess settings describe (plain values: it is saved with skops)."""
    return TabularCleaner(
        numeric=tuple(schema.numeric),
        categorical=tuple(schema.categorical),
        datetime=tuple(schema.datetime),
        impute_numeric=preprocess.impute_numeric.value,
        clip=preprocess.clip.value,
        iqr_factor=preprocess.iqr_factor,
        quantile_low=preprocess.quantile_low,
        quantile_high=preprocess.quantile_high,
    )


def build_preprocessor(
    schema: Schema, preprocess: PreprocessConfig, plan: FeaturePlan, derived: dict[str, str], seed: int
) -> Pipeline:
    """Cleaning + features: every step of the model Pipeline except the estimator."""
    steps = [("clean", cleaner_for(schema, preprocess))]
    if derived:
        steps.append(("derive", DerivedFeatures(expressions=dict(derived))))
    steps.append(("encode", build_encoder(plan, seed, stratified=schema.task is not Task.regression)))
    return Pipeline(steps)


def full_pipeline(preprocessor: Pipeline, estimator: BaseEstimator) -> Pipeline:
    """ONE Pipeline: cleaning + features + estimator; what gets registered and served."""
    return Pipeline([*clone(preprocessor).steps, ("model", estimator)])


def holdout_score(preprocessor: Pipeline, estimator: BaseEstimator,
                  train: pd.DataFrame, holdout: pd.DataFrame, schema: Schema, metric: str) -> float:
    """A configuration fitted on ``train`` and scored on ``holdout`` (a sanity check of a tuned
    configuration against rows its search never saw)."""
    model = full_pipeline(preprocessor, estimator)
    model.fit(train[list(schema.features)], train[schema.target])
    return score(metric, model, holdout[list(schema.features)], holdout[schema.target], schema.task, schema.classes)


def cv_splitter(task: Task, n_splits: int, seed: int, time_ordered: bool):
    if time_ordered:
        return TimeSeriesSplit(n_splits=n_splits)
    if task is Task.regression:
        return KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold, already cleaned and encoded (fitted on its train part)."""

    X_train: pd.DataFrame
    y_train: np.ndarray
    X_valid: pd.DataFrame
    y_valid: np.ndarray


def prepare_folds(preprocessor: Pipeline, X: pd.DataFrame, y: pd.Series, splitter) -> list[Fold]:
    """Fit the preprocessor once per fold, so trials only fit estimators.

    Valid because no tuned hyperparameter touches preprocessing, and leak-free because each
    fold's preprocessor sees only that fold's training rows.
    """
    folds = []
    y_arr = np.asarray(y)
    for train_idx, valid_idx in splitter.split(X, y_arr):
        pre = clone(preprocessor)
        X_tr = pre.fit_transform(X.iloc[train_idx], y_arr[train_idx])
        X_va = pre.transform(X.iloc[valid_idx])
        folds.append(Fold(X_tr, y_arr[train_idx], X_va, y_arr[valid_idx]))
    return folds


def iter_fold_scores(
    estimator: BaseEstimator, folds: list[Fold], metric: str, task: Task, classes: tuple,
    keep: list[np.ndarray] | None = None,
) -> Iterator[float]:
    """Fit a fresh clone on each fold and yield its validation score (for pruning). With
    ``keep``, each fold's out-of-fold ``predictions`` are appended to it, and scored."""
    for fold in folds:
        model = clone(estimator).fit(fold.X_train, fold.y_train)
        if keep is None:
            yield score(metric, model, fold.X_valid, fold.y_valid, task, classes)
        else:
            keep.append(predictions(model, fold.X_valid, task, classes))
            yield score_predictions(metric, fold.y_valid, keep[-1], task, classes)


def predictions(model: BaseEstimator, X, task: Task, classes: tuple) -> np.ndarray:
    """A fitted model's predictions as an ensemble averages them: values, or class
    probabilities with columns in ``classes`` order (a class the model never saw: 0)."""
    if task is Task.regression:
        return np.asarray(model.predict(X), dtype=float)
    proba = np.zeros((X.shape[0], len(classes)))
    index = {c: i for i, c in enumerate(classes)}
    proba[:, [index[c] for c in model.classes_]] = model.predict_proba(X)
    return proba

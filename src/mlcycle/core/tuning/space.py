"""The search space of a trial: one family's parameters, or (``model=auto``) a family first
and then that family's parameters. Pure: no mlflow, no hydra.

A search over several families is ONE Optuna study with a conditional space: the
categorical ``family`` parameter, then the chosen family's entries under
``<family>.<name>`` (each family keeps its own distributions, so a sampler never mixes
``random_forest.max_depth`` with ``extra_trees.max_depth``). Pruners compare the trials'
reported fold scores whatever their family, so pruning works across families. A new study
tries each family once first (enqueued trials, at the family's declared ``start`` point), so
no family is left out of a small budget and each is first tried where it is known to be
cheap and good.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from mlcycle.config.schema import EstimatorSpec
from mlcycle.core.modeling import FAMILY_PARAM, prefixed


def suggest(trial: optuna.Trial, search_space: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Draw one value per search-space entry ({type, low, high, log, choices}); the trial's
    parameter names carry ``prefix``, the returned estimator parameters do not."""
    params: dict[str, Any] = {}
    for name, space in search_space.items():
        kind, key = space["type"], f"{prefix}{name}"
        if kind == "float":
            params[name] = trial.suggest_float(key, float(space["low"]), float(space["high"]), log=bool(space.get("log", False)))
        elif kind == "int":
            params[name] = trial.suggest_int(key, int(space["low"]), int(space["high"]), log=bool(space.get("log", False)))
        elif kind == "categorical":
            params[name] = trial.suggest_categorical(key, list(space["choices"]))
        else:
            raise ValueError(f"search space {name!r}: unknown type {kind!r}")
    return params


def suggest_configuration(trial: optuna.Trial, families: dict[str, EstimatorSpec]) -> tuple[str, dict[str, Any]]:
    """The family and the estimator parameters of one trial."""
    if len(families) == 1:
        (name, spec), = families.items()
        return name, suggest(trial, spec.search_space)
    name = trial.suggest_categorical(FAMILY_PARAM, list(families))
    return name, suggest(trial, families[name].search_space, prefixed(name))


def enqueue_each_family(study: optuna.Study, families: dict[str, EstimatorSpec], starts: bool = True) -> None:
    """A new study over several families starts with one trial of each: at the family's
    ``start`` point (``starts``: tune.cheap_start; a known-cheap, known-good configuration
    declared in its conf/model/<family>.yaml), its other parameters drawn by the sampler."""
    if len(families) > 1 and not study.get_trials(deepcopy=False):
        for name, spec in families.items():
            start = start_point(spec) if starts else {}
            study.enqueue_trial({FAMILY_PARAM: name, **{f"{prefixed(name)}{key}": v for key, v in start.items()}})


def start_point(spec: EstimatorSpec) -> dict[str, Any]:
    """The family's ``start`` inside its search space as configured now: a number clipped
    into [low, high], a choice the space no longer offers left to the sampler (a user who
    narrows the space is not refused for the declared start)."""
    point: dict[str, Any] = {}
    for key, value in spec.start.items():
        space = spec.search_space.get(key)
        if space is None:
            continue
        if space["type"] == "categorical":
            if value in list(space["choices"]):
                point[key] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            clipped = min(max(value, space["low"]), space["high"])
            point[key] = int(round(clipped)) if space["type"] == "int" else float(clipped)
    return point


def family_of(params: dict[str, Any], families: dict[str, EstimatorSpec]) -> str:
    return params.get(FAMILY_PARAM, next(iter(families))) if len(families) > 1 else next(iter(families))


def best_by_family(study: optuna.Study, families: dict[str, EstimatorSpec]) -> dict[str, dict[str, Any]]:
    """Per family: its finished trials and its best score (None when none completed)."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    out: dict[str, dict[str, Any]] = {name: {"trials": 0, "best": None} for name in families}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        entry = out.setdefault(family_of(trial.params, families), {"trials": 0, "best": None})
        entry["trials"] += 1
        if trial.state == TrialState.COMPLETE and trial.value is not None:
            best = entry["best"]
            if best is None or (trial.value > best if maximize else trial.value < best):
                entry["best"] = trial.value
    return out

"""Hyperparameter search with Optuna. Pure: no mlflow, no hydra.

The study maximises or minimises the mean cross-validated score of the primary metric.
Trial results reach the caller through ``on_trial`` (the tune stage turns them into MLflow
runs off the critical path).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

from mlcycle.config import EstimatorSpec, Task
from mlcycle.evaluation import greater_is_better
from mlcycle.modeling import Fold, build_estimator, iter_fold_scores

SAMPLERS = ("tpe", "random")


def suggest(trial: optuna.Trial, search_space: dict[str, Any]) -> dict[str, Any]:
    """Draw one value per search-space entry ({type, low, high, log, choices})."""
    params: dict[str, Any] = {}
    for name, space in search_space.items():
        kind = space["type"]
        if kind == "float":
            params[name] = trial.suggest_float(name, float(space["low"]), float(space["high"]), log=bool(space.get("log", False)))
        elif kind == "int":
            params[name] = trial.suggest_int(name, int(space["low"]), int(space["high"]), log=bool(space.get("log", False)))
        elif kind == "categorical":
            params[name] = trial.suggest_categorical(name, list(space["choices"]))
        else:
            raise ValueError(f"search space {name!r}: unknown type {kind!r}")
    return params


def make_sampler(name: str, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r}; known: {list(SAMPLERS)}")


@dataclass(frozen=True)
class TrialResult:
    number: int
    params: dict[str, Any]
    value: float | None
    state: str  # COMPLETE | PRUNED | FAIL
    fold_scores: tuple[float, ...]
    error: str | None
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class StudyResult:
    best_params: dict[str, Any]
    best_value: float
    n_complete: int
    n_pruned: int
    n_failed: int
    study: optuna.Study


def run_study(
    spec: EstimatorSpec,
    folds: list[Fold],
    metric: str,
    task: Task,
    classes: tuple,
    *,
    n_trials: int,
    timeout: float | None,
    sampler: str,
    seed: int,
    on_trial: Callable[[TrialResult], None] | None = None,
) -> StudyResult:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if greater_is_better(metric) else "minimize"
    study = optuna.create_study(direction=direction, sampler=make_sampler(sampler, seed))
    fold_scores: dict[int, list[float]] = {}
    errors: dict[int, str] = {}

    def objective(trial: optuna.Trial) -> float:
        try:
            params = suggest(trial, spec.search_space)
            estimator = build_estimator(spec, params, seed)
            scores = fold_scores.setdefault(trial.number, [])
            for value in iter_fold_scores(estimator, folds, metric, task, classes):
                scores.append(value)
            mean = float(np.mean(scores))
            if not math.isfinite(mean):
                raise ValueError(f"non-finite {metric}: {mean}")
            return mean
        except Exception as exc:
            errors[trial.number] = f"{type(exc).__name__}: {exc}"
            raise

    def callback(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        if on_trial is None:
            return
        on_trial(
            TrialResult(
                number=frozen.number,
                params=dict(frozen.params),
                value=frozen.value,
                state=frozen.state.name,
                fold_scores=tuple(fold_scores.get(frozen.number, ())),
                error=errors.get(frozen.number),
                start_ms=int(frozen.datetime_start.timestamp() * 1000) if frozen.datetime_start else 0,
                end_ms=int(frozen.datetime_complete.timestamp() * 1000) if frozen.datetime_complete else 0,
            )
        )

    # A trial that raises is marked FAIL and the study goes on; only all-failed is fatal.
    study.optimize(objective, n_trials=n_trials, timeout=timeout, callbacks=[callback], catch=(Exception,))
    states = [t.state for t in study.trials]
    complete = states.count(optuna.trial.TrialState.COMPLETE)
    if complete == 0:
        first_error = next(iter(errors.values()), "unknown")
        raise RuntimeError(f"all {len(states)} tuning trials failed; first error: {first_error}")
    return StudyResult(
        best_params=dict(study.best_params),
        best_value=float(study.best_value),
        n_complete=complete,
        n_pruned=states.count(optuna.trial.TrialState.PRUNED),
        n_failed=states.count(optuna.trial.TrialState.FAIL),
        study=study,
    )

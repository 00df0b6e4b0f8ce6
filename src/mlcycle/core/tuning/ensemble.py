"""Ensemble selection over the best configuration of each family (``model=auto``,
``model.ensemble``). Pure: no mlflow, no hydra.

Greedy ensemble selection with replacement (Caruana et al. 2004, as auto-sklearn does):
each family's best configuration's predictions on every prepared CV fold (out-of-fold:
fitted on the fold's training rows) are those its trial made, kept as the trials ran
(``FamilyBests``); only a trial run elsewhere (another invocation, a tune-worker) is
refitted on the folds for them. Then, round after round, the member
whose addition gives the best mean per-fold score of the averaged predictions (class
probabilities, or values) is added, again if it is already in; a member's weight is how
often it was added. The best ensemble over the rounds is kept if it beats the best single
configuration's CV score on the same folds and metric, else the single best stays.
Deterministic: the members are fitted with the study's seed, ties go to the earlier family.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from sklearn.base import BaseEstimator, clone

from mlcycle.config.schema import EnsembleConfig, Task
from mlcycle.core import threads
from mlcycle.core.evaluation import greater_is_better, score_predictions
from mlcycle.core.modeling import ENSEMBLE, Fold, build_estimator, configuration, predictions
from mlcycle.core.tuning.objective import Objective
from mlcycle.core.tuning.space import family_of
from mlcycle.core.tuning.study import TrialResult


@dataclass(frozen=True)
class Selection:
    """What the selection found: ``weights`` (member -> count, in candidate order), the
    ensemble's CV score, the best single candidate and its CV score on the same folds."""

    weights: dict[str, int]
    score: float
    single: str
    single_score: float
    greater: bool

    @property
    def better(self) -> bool:
        """Kept only with two members or more and a strictly better CV score."""
        if len(self.weights) < 2 or not math.isfinite(self.score):
            return False
        return self.score > self.single_score if self.greater else self.score < self.single_score


def fold_prediction(estimator: BaseEstimator, fold: Fold, task: Task, classes: tuple,
                    openmp_threads: int | None = None) -> np.ndarray:
    """The out-of-fold prediction of a fresh clone fitted on the fold's training rows: values,
    or class probabilities with columns in ``classes`` order (a class the fold lacks: 0)."""
    with threads.limited_openmp(openmp_threads):  # per calling thread (a pool's)
        return predictions(clone(estimator).fit(fold.X_train, fold.y_train), fold.X_valid, task, classes)


def fold_predictions(estimators: dict[str, BaseEstimator], objective: Objective, n_jobs: int = 1,
                     threads_per_fit: int | None = None) -> dict[str, list[np.ndarray]]:
    """Each estimator's out-of-fold predictions on every fold of the objective, the fits in
    ``n_jobs`` threads (as the trials ran; the results do not depend on it)."""
    jobs = [(name, fold) for name in estimators for fold in objective.folds]
    per_fit = threads.per_job(n_jobs, threads_per_fit)
    how = (objective.task, objective.classes, per_fit)
    with threads.limited(per_fit), ThreadPoolExecutor(max(1, n_jobs)) as pool:
        done = list(pool.map(lambda job: fold_prediction(estimators[job[0]], job[1], *how), jobs))
    out: dict[str, list[np.ndarray]] = {name: [] for name in estimators}
    for (name, _), prediction in zip(jobs, done, strict=True):
        out[name].append(prediction)
    return out


def greedy_selection(predictions: dict[str, list[np.ndarray]], targets: Sequence[np.ndarray],
                     scorer: Callable[[np.ndarray, np.ndarray], float], greater: bool, rounds: int) -> Selection:
    """Caruana's forward selection with replacement over ``predictions`` (candidate -> one
    array per fold), scored by the mean over folds of ``scorer(y, averaged predictions)``;
    ``rounds`` additions at most, the best ensemble seen is returned."""
    names = list(predictions)
    sign = 1.0 if greater else -1.0

    def mean_score(per_fold: list[np.ndarray]) -> float:
        value = float(np.mean([scorer(y, p) for y, p in zip(targets, per_fold, strict=True)]))
        return value if math.isfinite(value) else -math.inf * sign

    singles = {name: mean_score(predictions[name]) for name in names}
    single = max(names, key=lambda n: (sign * singles[n], -names.index(n)))
    counts: dict[str, int] = dict.fromkeys(names, 0)
    total = [np.zeros_like(p, dtype=float) for p in predictions[names[0]]]
    best_counts, best_score = {}, -math.inf * sign
    for added in range(1, rounds + 1):
        tried = {name: mean_score([(t + p) / added for t, p in zip(total, predictions[name], strict=True)]) for name in names}
        pick = max(names, key=lambda n: (sign * tried[n], -names.index(n)))  # ties: the earlier candidate
        counts[pick] += 1
        total = [t + p for t, p in zip(total, predictions[pick], strict=True)]
        if sign * tried[pick] > sign * best_score:
            best_counts, best_score = {n: c for n, c in counts.items() if c}, tried[pick]
    return Selection(best_counts, best_score, single, singles[single], greater)


def best_trials(study: optuna.Study, objective: Objective) -> dict[str, optuna.trial.FrozenTrial]:
    """Each family's best complete trial, in the families' order."""
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if trial.value is None or not math.isfinite(trial.value):
            continue
        family = family_of(trial.params, objective.families)
        held = best.get(family)
        if held is None or (trial.value > held.value if maximize else trial.value < held.value):
            best[family] = trial
    return {name: best[name] for name in objective.families if name in best}


class FamilyBests:
    """Each family's best complete trial so far and its out-of-fold predictions, as trial
    results arrive (from the trial threads and the drain of worker processes alike). Ties go
    to the lower trial number, as in ``best_trials``."""

    def __init__(self, greater: bool):
        self._sign = 1.0 if greater else -1.0
        self._lock = threading.Lock()
        self._best: dict[str, tuple[float, int, tuple[np.ndarray, ...]]] = {}

    def add(self, result: TrialResult) -> None:
        if result.state != "COMPLETE" or not result.predictions or result.value is None or not math.isfinite(result.value):
            return
        key = (self._sign * result.value, -result.number)
        with self._lock:
            held = self._best.get(result.family)
            if held is None or key > (self._sign * held[0], -held[1]):
                self._best[result.family] = (result.value, result.number, result.predictions)

    def listening(self, on_trial: Callable[[TrialResult], None] | None) -> Callable[[TrialResult], None]:
        """An ``on_trial`` that records the result here, then passes it on."""
        def both(result: TrialResult) -> None:
            self.add(result)
            if on_trial is not None:
                on_trial(result)
        return both

    def by_trial(self) -> dict[int, tuple[np.ndarray, ...]]:
        with self._lock:
            return {number: kept for _, number, kept in self._best.values()}


@dataclass(frozen=True)
class Outcome:
    """The selection and what the tune stage caches for it (``params``: the best parameters
    naming the members, core.modeling.build_model's input), the seconds it took and the
    members whose fold predictions had to be refitted (their trials ran elsewhere)."""

    selection: Selection
    members: dict[str, dict[str, Any]]  # family -> its best trial's parameters
    seconds: float
    refitted: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, Any]:
        return {ENSEMBLE: [{"params": self.members[name], "weight": w} for name, w in self.selection.weights.items()]}

    @property
    def chosen(self) -> bool:
        return self.selection.better


def chosen(best_params: dict[str, Any], best_value: float, outcome: Outcome | None) -> tuple[dict[str, Any], float]:
    """The parameters and CV score the tune stage caches: the ensemble's when it was kept,
    else the best trial's."""
    if outcome is not None and outcome.chosen:
        return outcome.params, outcome.selection.score
    return best_params, best_value


def select_ensemble(objective: Objective, study: optuna.Study, config: EnsembleConfig, n_jobs: int = 1,
                    threads_per_fit: int | None = None,
                    known: dict[int, tuple[np.ndarray, ...]] | None = None) -> Outcome | None:
    """Greedy ensemble selection over each family's best trial on the objective's folds
    (None when ``model.ensemble`` is off, or fewer than two families completed a trial).
    ``known``: trial number -> its out-of-fold predictions (``StudyResult.predictions``);
    a member not in it is refitted on every fold, in ``n_jobs`` threads."""
    trials = best_trials(study, objective) if config.enabled else {}
    if len(trials) < 2:
        return None
    rounds = config.rounds
    started = time.perf_counter()
    task, classes, metric = objective.task, objective.classes, objective.metric
    known = known or {}
    estimators = {}
    for name, trial in trials.items():
        if trial.number not in known:
            _, spec, params = configuration(objective.families, trial.params)
            estimators[name] = build_estimator(spec, params, objective.seed)
    refitted = fold_predictions(estimators, objective, n_jobs, threads_per_fit) if estimators else {}
    found = {name: list(known[trial.number]) if trial.number in known else refitted[name] for name, trial in trials.items()}
    selection = greedy_selection(found, [fold.y_valid for fold in objective.folds],
                                 lambda y, p: score_predictions(metric, y, p, task, classes),
                                 greater_is_better(metric), rounds)
    members = {name: dict(trial.params) for name, trial in trials.items()}
    return Outcome(selection, members, time.perf_counter() - started, tuple(estimators))

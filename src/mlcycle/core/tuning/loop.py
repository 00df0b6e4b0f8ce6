"""The trial loop every worker runs (a thread, a spawned process, or a ``mlcycle
tune-worker`` on another machine). Pure: no mlflow, no hydra.

Each trial draws a configuration (``space``), scores it fold by fold and reports the mean
of the folds so far, so a pruner can stop a hopeless trial after its first folds; with
``tune.fidelity=subsample`` it reports instead its mean over the folds fitted on 1/9, then
1/3 of their training rows (``fidelity``), and scores all the rows only if the pruner lets
it go on. Results
reach the caller through ``on_trial`` (the tune stage turns them into MLflow runs off the
trial's critical path). ``n_trials`` counts the study's finished trials (``study.counts``),
so a resumed study runs only what is missing.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from mlcycle.core.liveness import owner_token
from mlcycle.core.modeling import build_estimator, iter_fold_scores
from mlcycle.core.tuning.fidelity import FULL_STEP
from mlcycle.core.tuning.objective import Objective
from mlcycle.core.tuning.space import suggest_configuration
from mlcycle.core.tuning.storage import LOCK_TIMEOUT, claim_lock
from mlcycle.core.tuning.study import (
    ERROR_ATTR,
    OWNER_ATTR,
    Search,
    TrialResult,
    TrialStarted,
    WorkerStats,
    counts,
    fail_stale_trials,
    reap_dead_trials,
)

POLL_SECONDS = 1.0  # how often a worker waiting for the last trials elsewhere looks again


class Quota:
    """Trial slots for one invocation, shared by its threads and spawned processes."""

    def __init__(self, slots: int, value: Any = None):
        self._value = value if value is not None else multiprocessing.get_context("spawn").Value("i", slots)

    @property
    def value(self) -> Any:
        return self._value

    def claim(self) -> bool:
        with self._value.get_lock():
            if self._value.value <= 0:
                return False
            self._value.value -= 1
            return True


def work(
    study: optuna.Study,
    objective: Objective,
    search: Search,
    *,
    quota: Quota | None = None,
    shared: bool = False,
    deadline: float | None = None,
    on_trial: Callable[[TrialResult], None] | None = None,
    on_trial_start: Callable[[TrialStarted], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    keep_predictions: bool = False,
) -> WorkerStats:
    """Run trials until the study reaches ``search.tune.n_trials`` finished trials.

    A ``quota`` counts slots in memory: exact, and enough when the storage is this
    invocation's alone. A ``shared`` storage may have workers elsewhere: before each trial
    the loop counts the study's trials in the storage under the study's claim lock, held
    until the trial exists, so that racing workers never start more than ``n_trials``; and
    when the last trials are running elsewhere it waits for them, failing stale ones so
    that their retries run here. Both may apply (a worker told to run at most N trials of
    a shared study). ``on_trial_start`` hears of each trial as it begins, ``on_trial`` of
    each as it ends; with ``keep_predictions``, a complete trial's result carries its
    out-of-fold predictions (for the ensemble selection). Past the ``deadline`` no trial
    starts, and a running one stops at its next fold (PRUNED, ``stopped``) once the study
    has a complete trial, so the timeout costs at most one fold's fit.
    """
    token = owner_token()
    persistent = search.tune.storage is not None
    pruning = search.tune.pruner != "none"
    blocked = 0.0
    ran = 0
    current: list[int] = []
    fold_scores: dict[int, list[float]] = {}
    errors: dict[int, str] = {}
    pruned_at: dict[int, int] = {}
    stopped: set[int] = set()  # trials stopped at the deadline
    drawn: dict[int, str] = {}  # trial -> family
    rung_scores: dict[int, list[tuple[int, float]]] = {}  # trial -> (step, mean score) per low-fidelity rung
    kept: dict[int, list[np.ndarray]] = {}  # trial -> out-of-fold predictions per fold (keep_predictions)
    how = (objective.metric, objective.task, objective.classes)

    claim = (claim_lock(search) if shared else None) or NO_LOCK

    def fn(trial: optuna.Trial) -> float:
        if persistent:
            trial.set_user_attr(OWNER_ATTR, token)  # first: an unnamed RUNNING trial looks dead
        claim.release()  # the trial exists: the next count includes it
        current[:] = [trial.number]
        if on_trial_start is not None:
            begun = trial.datetime_start
            on_trial_start(TrialStarted(trial.number, begun.timestamp() if begun else time.time()))
        try:
            family, params = suggest_configuration(trial, objective.families)
            drawn[trial.number] = family
            estimator = build_estimator(objective.families[family], params, objective.seed)
            for step, rung in objective.rungs:  # tune.fidelity=subsample: 1/9, then 1/3 of the rows
                try:
                    value = float(np.mean(list(iter_fold_scores(estimator, list(rung), *how))))
                except Exception:  # noqa: BLE001 - a subsample too small for it is no fault of the configuration
                    continue
                if not math.isfinite(value):
                    continue  # undefined on a subsample: the pruner hears of this trial at the next step
                rung_scores.setdefault(trial.number, []).append((step, value))
                trial.report(value, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at {step}/{FULL_STEP} of the training rows")
            scores = fold_scores.setdefault(trial.number, [])
            folds = list(objective.folds)
            keep = kept.setdefault(trial.number, []) if keep_predictions else None
            for step, value in enumerate(iter_fold_scores(estimator, folds, *how, keep=keep)):
                scores.append(value)
                if not math.isfinite(value):
                    # undefined on this fold (roc_auc of a one-class fold) or overflowed: the mean
                    # would be too. Optuna fails a trial that returns NaN, without a traceback.
                    errors[trial.number] = f"{objective.metric} = {value} on CV fold {step + 1} of {len(folds)}"
                    trial.set_user_attr(ERROR_ATTR, errors[trial.number])
                    return float("nan")
                if step < len(folds) - 1 and past(deadline) and has_complete_trial(study):
                    pruned_at[trial.number] = step + 1
                    stopped.add(trial.number)
                    raise optuna.TrialPruned(f"stopped at tune.timeout after {step + 1} fold(s)")
                if pruning and not objective.rungs and step < len(folds) - 1:
                    # without low-fidelity rungs (none, or none with MIN_ROWS rows)
                    # step = folds scored so far: the resource the pruner compares trials on
                    trial.report(float(np.mean(scores)), step + 1)
                    if trial.should_prune():
                        pruned_at[trial.number] = step + 1
                        raise optuna.TrialPruned(f"pruned after {step + 1} fold(s)")
            return float(np.mean(scores))
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            errors[trial.number] = message
            with contextlib.suppress(Exception):
                trial.set_user_attr(ERROR_ATTR, message[:2000])
            raise

    def callback(_: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
        nonlocal blocked
        predictions = tuple(kept.pop(frozen.number, ())) if frozen.state == TrialState.COMPLETE else ()
        kept.pop(frozen.number, None)
        was_stopped = frozen.number in stopped
        stopped.discard(frozen.number)
        if on_trial is None:
            return
        result = TrialResult(
            number=frozen.number,
            params=dict(frozen.params),
            value=frozen.value if frozen.state == TrialState.COMPLETE else None,
            state=frozen.state.name,
            fold_scores=tuple(fold_scores.pop(frozen.number, ())),
            error=errors.pop(frozen.number, None),
            start_ms=_ms(frozen.datetime_start),
            end_ms=_ms(frozen.datetime_complete),
            pruned_step=pruned_at.pop(frozen.number, None),
            stopped=was_stopped,
            worker=token,
            family=drawn.pop(frozen.number, ""),
            rung_scores=tuple(rung_scores.pop(frozen.number, ())),
            predictions=predictions,
        )
        started = time.perf_counter()
        on_trial(result)
        blocked += time.perf_counter() - started

    try:
        while True:
            if should_stop is not None and should_stop():
                break
            if past(deadline):
                break
            if shared:
                claim.acquire(LOCK_TIMEOUT)
                now = counts(study)
                if now.done >= search.tune.n_trials:
                    break
                if now.done + now.running >= search.tune.n_trials and now.waiting == 0:
                    # the last slots are taken elsewhere: wait, and take over any that died
                    claim.release()
                    reap_dead_trials(study, search.tune.max_retry)
                    fail_stale_trials(study)
                    time.sleep(POLL_SECONDS)
                    continue
            if quota is not None and not quota.claim():
                break
            try:
                study.optimize(fn, n_trials=1, catch=(Exception,), callbacks=[callback])
            except BaseException:
                # Terminated mid-trial (SIGTERM in the pipeline): Optuna leaves the trial
                # RUNNING; end it FAIL (no error attribute: it is not counted, and is re-run
                # on resume).
                for number in current:
                    with contextlib.suppress(Exception):
                        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
                raise
            finally:
                claim.release()
            current.clear()
            ran += 1
    finally:
        claim.close()
    return WorkerStats(token, ran, blocked)


class _NoLock:
    """A storage of this invocation's own needs no claim lock (its quota is exact)."""

    def acquire(self, timeout: float | None = None) -> None:
        pass

    release = close = acquire


NO_LOCK = _NoLock()


def past(deadline: float | None) -> bool:
    return deadline is not None and time.time() >= deadline


def has_complete_trial(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _ms(moment) -> int:
    return int(moment.timestamp() * 1000) if moment else 0



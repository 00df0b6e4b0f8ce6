"""Low-fidelity trials (``tune.fidelity=subsample``). Pure: no mlflow, no hydra.

A trial first fits its estimator on 1/9 of each CV fold's training rows, then on 1/3,
scoring each time on the fold's full validation rows, and reports the mean over the folds
at step 1 and step 3 (the step counts ninths of the rows); only then does it score the
folds on all their rows (step 9, its value). Optuna's own pruners decide which trials go
on: ``SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)`` has its rungs exactly
at steps 1, 3 and 9, so a trial continues past a rung only when it is in the best third of
the trials that reached it (``core.tuning.storage.make_pruner``); Hyperband runs brackets
of it. The subsamples are drawn once per fold (seeded, stratified by class so that every
class is present), so every trial sees the same rows. A rung with fewer than ``MIN_ROWS``
rows in a fold is left out (small data: trials are cheap there anyway, and scores on a few
dozen rows rank configurations by noise); with no rung left, pruning is per fold as
without fidelity. A configuration that cannot fit a subsample (``n_neighbors`` above its
rows) is not failed for it: the loop skips that rung.
"""

from __future__ import annotations

import numpy as np

from mlcycle.config.schema import Task
from mlcycle.core.modeling import Fold

RUNGS = ((1, 1 / 9), (3, 1 / 3))  # (step, fraction of each fold's training rows) before all of them
FULL_STEP = 9  # all the rows: the trial's value, never reported
MIN_ROWS = 200  # a rung whose subsample would be smaller is left out: too few rows to rank on


def low_fidelity_folds(folds: tuple[Fold, ...], fidelity: str, task: Task, seed: int) -> tuple[tuple[int, tuple[Fold, ...]], ...]:
    """(step, the folds on a subsample of their training rows) per rung; none for
    ``fidelity="none"``."""
    if str(fidelity) == "none":
        return ()
    if str(fidelity) != "subsample":
        raise ValueError(f"unknown tune.fidelity {fidelity!r}; known: none, subsample")
    smallest = min((len(fold.y_train) for fold in folds), default=0)
    return tuple(
        (step, tuple(subsample(fold, fraction, task, seed + k) for k, fold in enumerate(folds)))
        for step, fraction in RUNGS
        if fraction * smallest >= MIN_ROWS
    )


def subsample(fold: Fold, fraction: float, task: Task, seed: int) -> Fold:
    """The fold with ``fraction`` of its training rows (each class keeps that share of its
    rows, at least one) and all its validation rows."""
    rng = np.random.default_rng(seed)
    y = np.asarray(fold.y_train)
    if task is Task.regression:
        groups = [np.arange(len(y))]
    else:
        groups = [np.flatnonzero(y == value) for value in np.unique(y)]
    keep = np.sort(np.concatenate([
        rng.choice(group, size=max(1, round(fraction * len(group))), replace=False) for group in groups
    ]))
    X = fold.X_train
    rows = X.iloc[keep].reset_index(drop=True) if hasattr(X, "iloc") else X[keep]
    return Fold(rows, y[keep], fold.X_valid, fold.y_valid)

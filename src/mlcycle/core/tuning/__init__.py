"""Hyperparameter search with Optuna. Pure: no mlflow, no hydra.

The study maximises or minimises the mean cross-validated score of the primary metric.

* ``objective``: what a trial scores, and how another machine rebuilds it;
* ``space``: a trial's draw (one family's parameters, or a family and then its parameters);
* ``study``: the search settings, opening and counting a study, reaping dead trials;
* ``loop``: the trial loop every worker runs;
* ``fidelity``: low-fidelity rungs (``tune.fidelity=subsample``: subsamples of each fold's rows);
* ``storage``: Optuna storages, samplers and pruners;
* ``optimize``: one invocation's trials in threads or processes, the summary;
* ``figures``: the optimization history and the parameter importances.

The names below are the package's API (``from mlcycle.core import tuning``).
"""

from mlcycle.core.tuning.fidelity import FULL_STEP, RUNGS
from mlcycle.core.tuning.figures import history_figure, study_figures
from mlcycle.core.tuning.loop import work
from mlcycle.core.tuning.objective import Objective, describe_objective, objective_from_description
from mlcycle.core.tuning.optimize import jobs_worth_starting, optimize, summarize
from mlcycle.core.tuning.space import (
    best_by_family,
    enqueue_each_family,
    suggest,
    suggest_configuration,
)
from mlcycle.core.tuning.storage import is_shared, make_pruner, make_sampler, open_storage
from mlcycle.core.tuning.study import (
    ERROR_ATTR,
    OWNER_ATTR,
    Counts,
    Search,
    StudyResult,
    TrialResult,
    TrialStarted,
    WorkerStats,
    counts,
    load_study,
    reap_dead_trials,
    search_for,
    study_name,
)

__all__ = [
    "FULL_STEP", "RUNGS", "ERROR_ATTR", "OWNER_ATTR", "Counts", "Objective", "Search", "StudyResult", "TrialResult", "TrialStarted", "WorkerStats", "counts",
    "describe_objective", "history_figure", "is_shared", "load_study", "make_pruner", "make_sampler", "objective_from_description",
    "open_storage", "optimize", "reap_dead_trials", "search_for", "study_figures", "study_name", "suggest",
    "suggest_configuration", "enqueue_each_family", "best_by_family",
    "summarize", "jobs_worth_starting", "work",
]

"""Hyperparameter search with Optuna. Pure: no mlflow, no hydra.

The study maximises or minimises the mean cross-validated score of the primary metric.

* ``objective``: what a trial scores, and how another machine rebuilds it;
* ``space``: a trial's draw (one family's parameters, or a family and then its parameters);
* ``study``: the search settings, opening and counting a study, reaping dead trials;
* ``loop``: the trial loop every worker runs;
* ``fidelity``: low-fidelity rungs (``tune.fidelity=subsample``: subsamples of each fold's rows);
* ``storage``: Optuna storages, samplers and pruners;
* ``optimize``: one invocation's trials in threads or processes, the summary;
* ``ensemble``: greedy ensemble selection over each family's best (``model.ensemble``);
* ``figures``: the optimization history and the parameter importances.

The names below are the package's API (``from mlcycle.core import tuning``).
"""

from mlcycle.core.tuning.ensemble import Outcome, chosen, select_ensemble
from mlcycle.core.tuning.fidelity import FULL_STEP
from mlcycle.core.tuning.figures import history_figure, study_figures
from mlcycle.core.tuning.objective import Objective, describe_objective, objective_from_description
from mlcycle.core.tuning.optimize import optimize
from mlcycle.core.tuning.space import best_by_family, start_point, suggest
from mlcycle.core.tuning.storage import is_shared, make_pruner, make_sampler, open_storage
from mlcycle.core.tuning.study import (
    OWNER_ATTR,
    OWNERLESS_GRACE_S,
    Search,
    StudyResult,
    TrialResult,
    counts,
    load_study,
    reap_dead_trials,
    search_for,
    study_name,
)

__all__ = [
    "FULL_STEP", "OWNER_ATTR", "OWNERLESS_GRACE_S", "Objective", "Outcome", "chosen", "select_ensemble", "Search", "StudyResult", "TrialResult", "best_by_family", "counts", "describe_objective",
    "history_figure", "is_shared", "load_study", "make_pruner", "make_sampler", "objective_from_description", "open_storage",
    "optimize", "reap_dead_trials", "search_for", "start_point", "study_figures", "study_name", "suggest",
]

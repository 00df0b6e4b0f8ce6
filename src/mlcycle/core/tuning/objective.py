"""What a trial scores, and how another machine rebuilds it exactly. Pure: no mlflow.

An ``Objective`` is the estimator families a trial may draw (one, or several for
``model=auto``) on CV folds whose preprocessing is already fitted
(``core.modeling.prepare_folds``). A ``mlcycle tune-worker`` elsewhere gets the training
rows and ``describe``'s dict (the tune stage logs both) and rebuilds the same folds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from mlcycle.config.load import as_dict, from_plain
from mlcycle.config.schema import EstimatorSpec, PreprocessConfig, Task
from mlcycle.core.data import Schema
from mlcycle.core.evaluation import greater_is_better
from mlcycle.core.features import FeaturePlan
from mlcycle.core.modeling import Fold, build_preprocessor, cv_splitter, prepare_folds
from mlcycle.core.tuning.fidelity import FULL_STEP, low_fidelity_folds


@dataclass(frozen=True)
class Objective:
    """What a trial scores: a configuration of one of ``families`` (name -> estimator spec)
    on prepared CV folds; with ``fidelity="subsample"`` first on subsamples of their
    training rows (``rungs``, drawn once here: core/tuning/fidelity.py). Picklable."""

    families: dict[str, EstimatorSpec]
    folds: tuple[Fold, ...]
    metric: str
    task: Task
    classes: tuple
    seed: int
    fidelity: str = "none"
    prepare_seconds: float = field(default=0.0, compare=False)  # fitting the folds' preprocessing
    rungs: tuple[tuple[int, tuple[Fold, ...]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rungs", low_fidelity_folds(self.folds, self.fidelity, self.task, self.seed))

    @property
    def direction(self) -> str:
        return "maximize" if greater_is_better(self.metric) else "minimize"

    @property
    def max_step(self) -> int:
        """The last step a trial's reports can reach (a pruner's ``max_resource``): ninths of
        the rows with low-fidelity rungs, else folds."""
        return FULL_STEP if self.rungs else len(self.folds)


def describe_objective(schema: Schema, plan: FeaturePlan, preprocess: PreprocessConfig, derived: dict,
                       families: dict[str, EstimatorSpec], metric: str, cv_folds: int, seed: int,
                       time_ordered: bool, fidelity: str = "none") -> dict[str, Any]:
    """Everything but the rows that another machine needs to rebuild the objective exactly:
    JSON-ready (the tune stage logs it next to the training rows)."""
    return {
        "schema": schema.to_dict(),
        "plan": asdict(plan),
        "preprocess": as_dict(preprocess),
        "derived": dict(derived),
        "families": {name: as_dict(spec) for name, spec in families.items()},
        "metric": metric,
        "cv_folds": cv_folds,
        "seed": seed,
        "time_ordered": time_ordered,
        "fidelity": str(fidelity),
    }


def objective_from_description(description: dict[str, Any], train) -> Objective:
    """Rebuild the Objective from ``describe_objective``'s dict and the training rows:
    same preprocessor, same folds, same scores as the stage that described it."""
    schema = Schema.from_dict(description["schema"])
    plan = FeaturePlan.from_dict(description["plan"])
    seed = int(description["seed"])
    preprocessor = build_preprocessor(
        schema, from_plain(PreprocessConfig, description["preprocess"]), plan, dict(description["derived"]), seed
    )
    splitter = cv_splitter(schema.task, int(description["cv_folds"]), seed, time_ordered=bool(description["time_ordered"]))
    started = time.perf_counter()
    folds = prepare_folds(preprocessor, train[list(schema.features)], train[schema.target], splitter)
    described = description.get("families") or {"model": description["spec"]}  # "spec": before model=auto
    specs = {name: from_plain(EstimatorSpec, spec) for name, spec in described.items()}
    return Objective(specs, tuple(folds), description["metric"], schema.task, schema.classes, seed,
                     description.get("fidelity", "none"),  # absent: described before tune.fidelity
                     prepare_seconds=time.perf_counter() - started)

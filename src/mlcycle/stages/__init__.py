"""One thin adapter per stage: read the State, call pure code, log, return a new State.

A stage is ``run(state, cfg, run) -> State``. The orchestrator (pipeline.py), not the stage,
opens and closes the stage's MLflow run, so no stage can forget to nest or to end it.
"""

from collections.abc import Callable

from mlcycle.stages import evaluate, features, ingest, preprocess, register, train, tune

STAGE_FUNCTIONS: dict[str, Callable] = {
    "ingest": ingest.run,
    "preprocess": preprocess.run,
    "features": features.run,
    "tune": tune.run,
    "train": train.run,
    "evaluate": evaluate.run,
    "register": register.run,
}

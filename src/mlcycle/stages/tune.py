"""tune: an Optuna study over the model's search space (core/tuning), one child run per trial,
scored by CV on the training rows. A persistent ``tune.storage`` resumes the study, a shared
one lets other machines join (``mlcycle tune-worker``). Caches the best parameters and score.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from sklearn.base import clone

from mlcycle.config.schema import Config
from mlcycle.core import tuning
from mlcycle.core.evaluation import primary_metric
from mlcycle.core.modeling import build_model, check_model, families, holdout_score
from mlcycle.stages.base import Stage, State, read_json, write_json
from mlcycle.tracking import study
from mlcycle.tracking.runs import ActiveRun
from mlcycle.tracking.trials import writer_kind


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema, tune = state.schema, cfg.tune
    metric = primary_metric(cfg.evaluate.primary_metric, schema.task)
    specs = families(cfg.model, schema.task)  # one, or model=auto's several
    # One recipe for the objective, here and on any machine that joins the study.
    description = tuning.describe_objective(schema, state.plan, cfg.preprocess, dict(cfg.data.derived_features),
                                            specs, metric, tune.cv_folds, cfg.seed, bool(cfg.data.time_column), tune.fidelity)
    rows = state.train[[*schema.features, schema.target]]
    objective = tuning.objective_from_description(description, rows)  # folds prepared once, up front
    search = tuning.search_for(cfg, specs, metric, state.data_digest)
    ensembling = cfg.model.ensemble.enabled and len(specs) > 1  # trials keep their out-of-fold predictions
    study.log_search(run, search, metric, specs, cfg.threads_per_fit)
    run.log.flush()  # parameters (storage, study name) stored before a worker can find the objective
    if tuning.is_shared(tune.storage):
        study.share_objective(run, rows, description, search)
    done = study.run_study(run.log.client, run.experiment_id, run.run_id, objective, search, writer=tune.trial_writer,
                           progress=tune.progress_bar, n_jobs=tune.n_jobs, parallel=tune.parallel,
                           threads_per_fit=cfg.threads_per_fit, keep_predictions=ensembling)
    best = done.result
    # model=auto: a soft vote of the families' bests, kept if its CV score beats the best trial's
    ensemble = tuning.select_ensemble(objective, best.study, cfg.model.ensemble, best.n_jobs, cfg.threads_per_fit,
                                      known=best.predictions)
    params, cv_score = tuning.chosen(best.best_params, best.best_value, ensemble)
    # sanity check against the held-out validation rows: the chosen model fitted on train only
    model = build_model(specs, params, schema.task, cfg.seed)
    val_score = holdout_score(state.preprocessor, model.estimator, state.train, state.validation, schema, metric)
    study.log_outcome(run, done, specs, model.family, {f"val_{metric}": val_score, "folds_prepare_seconds": objective.prepare_seconds},
                      plots_seed=cfg.seed if tune.plots else None, ensemble=ensemble)
    return replace(state, metric=metric, best_params=params, cv_score=cv_score, preprocessor=clone(state.preprocessor))


def precheck(cfg: Config, tracking_uri: str) -> None:
    """Refused before any run exists: an estimator parameter scikit-learn would refuse (checked
    here for every later stage too), a trial writer that cannot work with this store."""
    check_model(cfg.model)
    writer_kind(cfg.tune.trial_writer, tracking_uri)


def save(state: State, out: Path) -> None:
    # strict JSON: a value that does not survive the round trip fails here, not on a hit
    write_json(out / "tune.json", {"metric": state.metric, "best_params": state.best_params, "cv_score": state.cv_score})


def load(state: State, cfg: Config, files: Path) -> State:
    stored = read_json(files, "tune.json")
    return replace(state, metric=stored["metric"], best_params=stored["best_params"], cv_score=stored["cv_score"],
                   preprocessor=clone(state.preprocessor))


# model.threshold is not read: it is chosen after tuning (stages/train.py)
READS = ("model.name", "model.classifier", "model.regressor", "model.families", "model.ensemble", "tune", "evaluate.primary_metric", "data.time_column", "seed")
STAGE = Stage("tune", READS, run, save, load, precheck=precheck)

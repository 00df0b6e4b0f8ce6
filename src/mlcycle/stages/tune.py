"""tune: an Optuna study over the model's search space, one child run per trial.

Trials are scored by CV on the training rows, each fold's preprocessing fitted once. A
persistent ``tune.storage`` resumes the same study (``core.tuning.search_for`` names it); a
shared one lets other machines join (``mlcycle tune-worker``). Caches the best parameters
and CV score (the trial runs stay under the run that made them).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from sklearn.base import clone

from mlcycle.config.schema import Config
from mlcycle.core import tuning
from mlcycle.core.evaluation import primary_metric
from mlcycle.core.masking import mask_uri
from mlcycle.core.modeling import check_model, configuration, families, holdout_score
from mlcycle.errors import ConfigError
from mlcycle.stages.base import Stage, State, read_json, write_json
from mlcycle.tracking import study
from mlcycle.tracking.artifacts import log_artifact_dict, log_figures
from mlcycle.tracking.runs import STUDY_TAG, ActiveRun
from mlcycle.tracking.trials import writer_kind

FAMILY_BEST, FAMILY_TRIALS = "best_cv_score_", "family_trials_"  # + family name: model=auto's tune run
LOGGED = ("sampler", "pruner", "n_trials", "cv_folds", "n_jobs", "parallel", "blas_threads", "fidelity", "cheap_start")  # tune.* as params


def run(state: State, cfg: Config, run: ActiveRun) -> State:
    schema, tune = state.schema, cfg.tune
    metric = primary_metric(cfg.evaluate.primary_metric, schema.task)
    specs = families(cfg.model, schema.task)  # one, or model=auto's several
    # One recipe for the objective, here and on any machine that joins the study.
    description = tuning.describe_objective(schema, state.plan, cfg.preprocess, dict(cfg.data.derived_features),
                                            specs, metric, tune.cv_folds, cfg.seed, bool(cfg.data.time_column), tune.fidelity)
    rows = state.train[[*schema.features, schema.target]]
    started = time.perf_counter()
    objective = tuning.objective_from_description(description, rows)  # folds prepared once, up front
    folds_seconds = time.perf_counter() - started
    search = tuning.search_for(cfg, specs, metric, state.data_digest)
    run.log.set_tags({STUDY_TAG: search.study_name})
    estimators = {"families": list(specs)} if len(specs) > 1 else {"estimator": next(iter(specs.values())).estimator}
    run.log.log_params({"metric": metric, "study_name": search.study_name, **estimators,
                        "storage": mask_uri(tune.storage) if tune.storage else "memory",
                        **{k: getattr(tune, k) for k in LOGGED}, "n_jobs": tune.n_jobs or "auto",
                        "threads_per_fit": cfg.threads_per_fit or "default"})
    if tuning.is_shared(tune.storage):
        study.share_objective(run, rows, description, search)
    run.log.flush()  # study name and parameters visible to workers while trials run
    done = study.run_study(run.log.client, run.experiment_id, run.run_id, objective, search, writer=tune.trial_writer,
                           progress=tune.progress_bar, n_jobs=tune.n_jobs, parallel=tune.parallel,
                           threads_per_fit=cfg.threads_per_fit)
    best = done.result
    # sanity check against the held-out validation rows: the best configuration fitted on train only
    family, spec, params = configuration(specs, best.best_params)
    val_score = holdout_score(state.preprocessor, spec, params, cfg.seed, state.train, state.validation, schema, metric)
    run.log.log_params({"trial_writer": done.writer, "n_jobs_used": best.n_jobs, "best_family": family,
                        **{f"best.{k}": v for k, v in best.best_params.items()}})
    run.log.set_tags({"mlcycle.best_trial": best.best_number})
    run.log.log_metrics({f"best_cv_{metric}": best.best_value, f"val_{metric}": val_score,
                         "folds_prepare_seconds": folds_seconds, **done.metrics(), **per_family(best.study, specs)})
    if tune.plots:
        figures, importances = tuning.study_figures(best.study, cfg.seed, metric)
        log_figures(figures, "plots")
        if importances:
            log_artifact_dict(importances, "param_importances.json")
    return replace(state, metric=metric, best_params=best.best_params, cv_score=best.best_value,
                   preprocessor=clone(state.preprocessor))


def per_family(study_, specs: dict) -> dict[str, float]:
    """model=auto: each family's best CV score and finished trials (families with no
    complete trial have no score)."""
    if len(specs) == 1:
        return {}
    out: dict[str, float] = {}
    for name, found in tuning.best_by_family(study_, specs).items():
        out[f"{FAMILY_TRIALS}{name}"] = found["trials"]
        if found["best"] is not None:
            out[f"{FAMILY_BEST}{name}"] = found["best"]
    return out


def precheck(cfg: Config, tracking_uri: str) -> None:
    """Refused before any run exists: an estimator parameter scikit-learn would refuse (the
    first stage that builds estimators checks them for every later one), a trial writer that
    cannot work with this store."""
    check_model(cfg.model)
    try:
        writer_kind(cfg.tune.trial_writer, tracking_uri)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def save(state: State, out: Path) -> None:
    # strict JSON: a value that does not survive the round trip fails here, not on a hit
    write_json(out / "tune.json", {"metric": state.metric, "best_params": state.best_params, "cv_score": state.cv_score})


def load(state: State, cfg: Config, files: Path) -> State:
    stored = read_json(files, "tune.json")
    return replace(state, metric=stored["metric"], best_params=stored["best_params"], cv_score=stored["cv_score"],
                   preprocessor=clone(state.preprocessor))


# model.threshold is not read: it is chosen after tuning (stages/train.py)
READS = ("model.name", "model.classifier", "model.regressor", "model.families", "tune", "evaluate.primary_metric", "data.time_column", "seed")
STAGE = Stage("tune", READS, run, save, load, precheck=precheck)

"""Benchmark 1: what tracking costs the tune stage.

The same study (default dataset, 3-fold CV, seeded TPE, in-memory Optuna storage) run
three ways, alternating, ``--reps`` times each:

* bare: a plain Optuna loop calling the same objective (same folds, same estimator), no
  MLflow at all;
* sqlite: the tune stage (one child run per trial) against a local sqlite store;
* http: the tune stage against a local ``mlflow server --workers 1`` over HTTP.

Printed: the median wall time of the study phase and its ratio to bare; and, measured
inside the process, the time per trial the trial loop spent blocked on tracking (handing
the trial to the writer thread) plus the time the stage waited for the writer after the
last trial. Targets: blocked <= 10 ms per trial over HTTP; wall ratio <= 1.03 (sqlite) and
<= 1.05 (HTTP) for histogram gradient boosting; <= 1.10 over HTTP for fast trials.

    .venv/bin/python benchmarks/tuning_overhead.py                       # full: 30 trials x 3 reps, both models
    .venv/bin/python benchmarks/tuning_overhead.py --trials 10 --reps 2  # reduced
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import compose, limit_threads, median, mlflow_server, prepare_state, temp_folder

VARIANTS = {  # tracked variants: store, extra overrides
    "bare": (None, []),
    "sqlite": ("sqlite", []),
    "http": ("http", []),
    "http-thread": ("http", ["tune.trial_writer=thread"]),
}
MODELS = {
    "hist_gradient_boosting": "HGB (~2 s trials)",
    "logistic_regression": "logistic regression (fast trials)",
}


def bare(cfg, state) -> dict:
    """A plain Optuna loop over the same objective: no tracking anywhere."""
    import numpy as np
    import optuna

    from mlcycle.core import threads
    from mlcycle.core.evaluation import greater_is_better, primary_metric
    from mlcycle.core.modeling import (
        build_estimator,
        cv_splitter,
        estimator_spec,
        iter_fold_scores,
        prepare_folds,
    )
    from mlcycle.core.tuning import suggest

    schema = state.schema
    metric = primary_metric(cfg.evaluate.primary_metric, schema.task)
    spec = estimator_spec(cfg.model, schema.task)
    X, y = state.train[list(schema.features)], state.train[schema.target]
    folds = prepare_folds(state.preprocessor, X, y, cv_splitter(schema.task, cfg.tune.cv_folds, cfg.seed, False))

    def objective(trial):
        estimator = build_estimator(spec, suggest(trial, spec.search_space), cfg.seed)
        return float(np.mean(list(iter_fold_scores(estimator, folds, metric, schema.task, schema.classes))))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if greater_is_better(metric) else "minimize",
        sampler=optuna.samplers.TPESampler(seed=cfg.tune.seed),
    )
    started = time.perf_counter()
    # the same thread pools as the tune stage's trials (one job)
    with threads.limited(threads.per_job(1, cfg.threads_per_fit), cfg.tune.blas_threads):
        study.optimize(objective, n_trials=cfg.tune.n_trials)
    return {"study_s": time.perf_counter() - started, "blocked_ms": 0.0, "wait_s": 0.0, "best": study.best_value, "writer": "-"}


def tracked(cfg, state, uri: str, artifacts: Path) -> dict:
    """The real tune stage under a root run, against ``uri``."""
    import mlflow
    from mlflow import MlflowClient

    from mlcycle.stages import tune
    from mlcycle.tracking import runs as tracking

    os.environ["MLFLOW_TRACKING_URI"] = uri
    experiment = tracking.prepare_experiment(uri, "bench-overhead", str(artifacts))
    with tracking.root_run(experiment, "bench", {}) as root, tracking.stage_run(root, "tune") as stage:
        tune.run(state, cfg, stage)
    data = MlflowClient(uri).get_run(stage.run_id).data
    metrics = data.metrics
    mlflow.set_tracking_uri(None)
    return {
        "study_s": metrics["study_seconds"],
        "blocked_ms": metrics["tracking_blocked_ms_per_trial"],
        "wait_s": metrics["tracking_wait_seconds"],
        "best": next(v for k, v in metrics.items() if k.startswith("best_cv_")),
        "writer": data.params["trial_writer"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument(
        "--variants", nargs="+", default=["bare", "sqlite", "http"], choices=list(VARIANTS),
        help="http-thread: over HTTP with the trial writer a thread of the tuning process (tune.trial_writer=thread)",
    )
    parser.add_argument(
        "overrides", nargs="*",
        help="extra config overrides for every variant, e.g. tune.blas_threads=null tune.trial_writer=thread",
    )
    parser.add_argument(
        "--threads", type=int, default=None,
        help="cap BLAS/OpenMP threads per process (on an overloaded machine, 2 spinning threads per trial can run 10x slower than 1)",
    )
    args = parser.parse_args()
    limit_threads(args.threads)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")

    with temp_folder() as tmp, mlflow_server(Path(tmp)) as http:
        uris = {"sqlite": f"sqlite:///{tmp}/local.db", "http": http}
        order = list(dict.fromkeys(["bare", *args.variants]))
        for model in args.models:
            base_overrides = [
                f"model={model}", f"data.n_rows={args.rows}", f"tune.n_trials={args.trials}",
                "tune.progress_bar=false", "tune.plots=false", "mlflow.experiment_name=bench-overhead",
                *args.overrides,
            ]
            cfgs = {v: compose([*base_overrides, *VARIANTS[v][1]]) for v in order}
            state = prepare_state(cfgs["bare"])
            runs: dict[str, list[dict]] = {v: [] for v in order}
            for rep in range(args.reps):
                shift = rep % len(order)
                for variant in order[shift:] + order[:shift]:  # rotate: no variant always first
                    store = VARIANTS[variant][0]
                    if store is None:
                        result = bare(cfgs[variant], state)
                    else:
                        result = tracked(cfgs[variant], state, uris[store], Path(tmp) / "artifacts")
                    runs[variant].append(result)
                    print(f"  {model} rep {rep + 1} {variant:11s} study {result['study_s']:7.2f} s  "
                          f"blocked {result['blocked_ms']:6.3f} ms/trial  writer ({result['writer']}) wait {result['wait_s']:.3f} s", flush=True)
            base = median([r["study_s"] for r in runs["bare"]])
            print(f"\n{MODELS[model]}: {args.trials} trials, {args.rows:,} rows, {args.reps} reps; "
                  f"bare loop median {base:.2f} s ({base / args.trials * 1000:.0f} ms/trial)")
            for variant in order[1:]:
                wall = median([r["study_s"] for r in runs[variant]])
                # the same repetition's variants ran back to back: their ratio shows the spread
                paired = sorted(r["study_s"] / b["study_s"] for r, b in zip(runs[variant], runs["bare"], strict=True))
                print(f"  {variant:11s}: wall ratio {wall / base:.3f} (per repetition {paired[0]:.3f}-{paired[-1]:.3f})  "
                      f"blocked {median([r['blocked_ms'] for r in runs[variant]]):.3f} ms/trial  "
                      f"writer wait after last trial {median([r['wait_s'] for r in runs[variant]]) * 1000:.0f} ms")
            print(flush=True)


if __name__ == "__main__":
    main()

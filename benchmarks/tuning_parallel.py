"""Benchmark 2: trials per minute with tune.n_jobs=2 versus n_jobs=1 (2 cores).

The same objective (default dataset, 3-fold CV) through ``tuning.optimize`` with a seeded
random sampler (so that trial costs do not depend on the search history), alternating
n_jobs=1, n_jobs=2 processes and n_jobs=2 threads, ``--reps`` times; no tracking. Wall
time includes starting the worker processes. Target: >= 1.6x at n_jobs=2.

    .venv/bin/python benchmarks/tuning_parallel.py                      # 20 trials x 3 reps, HGB and LR
    .venv/bin/python benchmarks/tuning_parallel.py --trials 8 --reps 1  # reduced
"""

from __future__ import annotations

import argparse
import os
import time

from _common import compose, limit_threads, median, prepare_state


def objective_of(cfg, state):
    from mlcycle.core.evaluation import primary_metric
    from mlcycle.core.modeling import cv_splitter, families, prepare_folds
    from mlcycle.core.tuning import Objective

    schema = state.schema
    metric = primary_metric(cfg.evaluate.primary_metric, schema.task)
    X, y = state.train[list(schema.features)], state.train[schema.target]
    folds = prepare_folds(state.preprocessor, X, y, cv_splitter(schema.task, cfg.tune.cv_folds, cfg.seed, False))
    return Objective(families(cfg.model, schema.task), tuple(folds), metric, schema.task, schema.classes, cfg.seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--models", nargs="+", default=["hist_gradient_boosting", "logistic_regression"])
    parser.add_argument(
        "--threads", type=int, default=None,
        help="cap BLAS/OpenMP threads per process (on an overloaded machine, 2 spinning threads per trial can run 10x slower than 1)",
    )
    args = parser.parse_args()
    limit_threads(args.threads)
    from mlcycle.core.tuning import Search, optimize

    cores = len(os.sched_getaffinity(0))
    variants = [("n_jobs=1", 1, "process"), ("n_jobs=2 processes", 2, "process"), ("n_jobs=2 threads", 2, "thread")]
    for model in args.models:
        cfg = compose([f"model={model}", f"data.n_rows={args.rows}"])
        objective = objective_of(cfg, prepare_state(cfg))
        rates: dict[str, list[float]] = {name: [] for name, _, _ in variants}
        for rep in range(args.reps):
            for name, n_jobs, parallel in variants[rep % 3:] + variants[: rep % 3]:
                search = Search.of(study_name=f"bench-{rep}", n_trials=args.trials, sampler="random", seed=rep)
                started = time.perf_counter()
                result = optimize(objective, search, n_jobs=n_jobs, parallel=parallel)
                seconds = time.perf_counter() - started
                assert result.n_run == args.trials
                rates[name].append(60 * args.trials / seconds)
                print(f"  {model} rep {rep + 1} {name:18s} {seconds:7.1f} s  {rates[name][-1]:6.1f} trials/min", flush=True)
        base = median(rates["n_jobs=1"])
        print(f"\n{model}: {args.trials} trials x {args.reps} reps, {args.rows:,} rows, {cores} cores")
        for name, _, _ in variants:
            print(f"  {name:18s} {median(rates[name]):6.1f} trials/min  x{median(rates[name]) / base:.2f}")
        print(flush=True)


if __name__ == "__main__":
    main()

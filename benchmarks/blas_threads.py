"""Benchmark: BLAS threads inside a tuning trial (the evidence for tune.blas_threads=1).

The bare Optuna loop of tuning_overhead.py (same objective, no tracking) for logistic
regression, the estimator whose fits run on BLAS, with OpenBLAS capped at 1 thread and at
the library default (every core), alternating, ``--reps`` times per size. Printed: median
study wall time, process CPU seconds, and the best score (identical: the cap changes how
fast, not what is found).

    .venv/bin/python benchmarks/blas_threads.py                 # 20,000 rows x 30 trials, 200,000 rows x 10 trials
    .venv/bin/python benchmarks/blas_threads.py --reps 1        # reduced
"""

from __future__ import annotations

import argparse
import os

from _common import compose, median, prepare_state
from tuning_overhead import bare

SIZES = ((20_000, 30), (200_000, 10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    for rows, trials in SIZES:
        results: dict[str, list[tuple[float, float, float]]] = {"1": [], "default": []}
        base = ["model=logistic_regression", f"data.n_rows={rows}", f"tune.n_trials={trials}"]
        state = prepare_state(compose(base))  # the same rows and folds for both variants
        for rep in range(args.reps):
            order = ("1", "default") if rep % 2 == 0 else ("default", "1")
            for blas in order:
                cfg = compose([*base, f"tune.blas_threads={1 if blas == '1' else 'null'}"])
                cpu = sum(os.times()[:2])
                result = bare(cfg, state)
                cpu = sum(os.times()[:2]) - cpu
                results[blas].append((result["study_s"], cpu, result["best"]))
                print(f"  {rows:>9,} rows rep {rep + 1} blas={blas:7s} study {result['study_s']:6.2f} s  "
                      f"cpu {cpu:6.2f} s  best {result['best']:.5f}", flush=True)
        one, default = (median([r[0] for r in results[k]]) for k in ("1", "default"))
        print(f"\nlogistic regression, {rows:,} rows, {trials} trials, {args.reps} reps, {cores} cores: "
              f"1 BLAS thread {one:.2f} s (cpu {median([r[1] for r in results['1']]):.1f} s), "
              f"default {default:.2f} s (cpu {median([r[1] for r in results['default']]):.1f} s): "
              f"default / 1 = {default / one:.2f}\n", flush=True)


if __name__ == "__main__":
    main()

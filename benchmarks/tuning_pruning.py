"""Benchmark 3: CPU seconds to reach the same best score with and without pruning.

The same study (default dataset, HGB, seeded TPE, ``--folds``-fold CV) with no pruner and
with the median pruner, for several seeds. CPU time is this process's (all threads,
OpenMP included), recorded after every trial. For each seed the target is the best score
of the unpruned study minus 0.002; the figure is the CPU time each study needed to first
reach it. Target: pruning saves at least 35 %.

    .venv/bin/python benchmarks/tuning_pruning.py                         # 30 trials, 3 seeds
    .venv/bin/python benchmarks/tuning_pruning.py --trials 15 --seeds 1   # reduced
"""

from __future__ import annotations

import argparse
import time

from _common import compose, limit_threads, median, prepare_state
from tuning_parallel import objective_of


def run(objective, trials: int, pruner: str, seed: int, maximize: bool, startup: int) -> tuple[list[tuple[float, float]], int]:
    """(cpu seconds so far, best so far) after each trial, and the number pruned."""
    from mlcycle.core.tuning import Search, optimize

    trace: list[tuple[float, float]] = []
    best = [None]
    start = time.process_time()

    def on_trial(result) -> None:
        if result.value is not None and (best[0] is None or (result.value > best[0]) == maximize):
            best[0] = result.value
        trace.append((time.process_time() - start, best[0]))

    search = Search.of(study_name=f"prune-{pruner}-{seed}", n_trials=trials, pruner=pruner, pruner_startup_trials=startup, seed=seed)
    result = optimize(objective, search, on_trial=on_trial)
    return trace, result.counts.pruned


def first_reaching(trace, target: float, maximize: bool) -> float | None:
    for cpu, best in trace:
        if best is not None and ((best >= target) if maximize else (best <= target)):
            return cpu
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--pruner", default="median", choices=["median", "successive_halving", "hyperband"])
    parser.add_argument("--startup", type=int, default=5, help="median pruner: trials before pruning starts")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="cap BLAS/OpenMP threads per process (on an overloaded machine, 2 spinning threads per trial can run 10x slower than 1)",
    )
    args = parser.parse_args()
    limit_threads(args.threads)
    cfg = compose(["model=hist_gradient_boosting", f"data.n_rows={args.rows}", f"tune.cv_folds={args.folds}"])
    objective = objective_of(cfg, prepare_state(cfg))
    maximize = objective.direction == "maximize"
    savings, totals = [], []
    for seed in range(args.seeds):
        plain, _ = run(objective, args.trials, "none", seed, maximize, args.startup)
        pruned, n_pruned = run(objective, args.trials, args.pruner, seed, maximize, args.startup)
        target = plain[-1][1] - 0.002 if maximize else plain[-1][1] + 0.002
        cpu_plain, cpu_pruned = first_reaching(plain, target, maximize), first_reaching(pruned, target, maximize)
        totals.append(1 - pruned[-1][0] / plain[-1][0])
        reached = f"{cpu_pruned:7.1f} s" if cpu_pruned is not None else "  never"
        print(
            f"  seed {seed}: best {plain[-1][1]:.4f} (none) vs {pruned[-1][1]:.4f} ({args.pruner}, {n_pruned} pruned); "
            f"CPU to reach {target:.4f}: {cpu_plain:7.1f} s vs {reached}; "
            f"CPU for all {args.trials} trials {plain[-1][0]:.1f} s vs {pruned[-1][0]:.1f} s",
            flush=True,
        )
        if cpu_pruned is not None:
            savings.append(1 - cpu_pruned / cpu_plain)
    print(f"\n{args.pruner} pruner, {args.trials} trials, {args.folds} folds, {args.rows:,} rows, {args.seeds} seed(s):")
    if savings:
        print(f"  CPU saved to reach the unpruned best (-0.002): median {median(savings):.0%} over {len(savings)} seed(s) that reached it")
    print(f"  CPU saved over the whole study: median {median(totals):.0%}")
    print(f"  seeds where the pruned study never reached the target: {args.seeds - len(savings)}")


if __name__ == "__main__":
    main()

"""The tune stage on a quiet machine and beside other work: today's thread default against
the old one, alternating, in one run.

    .venv/bin/python benchmarks/busy_machine.py                       # ~40 min on 2 cores
    .venv/bin/python benchmarks/busy_machine.py --rows 5000 --busy-rows 5000 --reps 1

Each measurement is a real `mlcycle train` (ingest -> preprocess -> features -> tune, 20
trials of hist gradient boosting (the default model when measured) on the default data, step cache off) in a fresh sqlite store;
the number is the tune stage's wall time as its run recorded it. Variants:

* ``old``: ``threads_per_fit=null tune.n_jobs=1`` (before: one trial at a time, every
  OpenMP/BLAS thread the libraries want);
* ``new``: the defaults (one thread per fit; ``tune.n_jobs`` auto).

"Busy" runs the same beside ``--burners`` processes that spin on the CPU (bounded: each
stops by itself after ``--burn-seconds``, and is stopped once the measurement ends). The
table gives each variant's median, the paired new/old ratio on a quiet machine per data
size, and busy/quiet per variant.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"old": ["threads_per_fit=null", "tune.n_jobs=1"], "new": []}
BURN = "import time, sys\nend = time.time() + float(sys.argv[1])\nwhile time.time() < end:\n    pass\n"


def measure(rows: int, variant: str, trials: int, extra: list[str]) -> tuple[float, str]:
    """One `mlcycle train` up to tune; returns (tune stage seconds, parallel trials used)."""
    with tempfile.TemporaryDirectory(prefix="mlcycle-busy-") as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        env = dict(os.environ, MLFLOW_TRACKING_URI=store, MLCYCLE_ROOT=tmp, PYTHONPATH=str(ROOT / "src"))
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MLFLOW_RUN_ID"):
            env.pop(var, None)
        cmd = [sys.executable, "-m", "mlcycle", "train", "model=hist_gradient_boosting", f"data.n_rows={rows}", f"tune.n_trials={trials}",
               "cache=false", "stages=[ingest,preprocess,features,tune]", "report.enabled=false",
               "tune.progress_bar=false", "tune.plots=false", f"hydra.run.dir={tmp}/hydra",
               *VARIANTS[variant], *extra]
        done = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{variant} at {rows} rows failed:\n{done.stderr[-3000:]}")
        from mlflow import MlflowClient

        from mlcycle.tracking.runs import seconds_of

        client = MlflowClient(store)
        exp = client.get_experiment_by_name("mlcycle")
        (tune,) = client.search_runs([exp.experiment_id], "tags.`mlcycle.stage` = 'tune'")
        return seconds_of(tune.data.metrics), tune.data.params.get("n_jobs_used", "1")


class Burners:
    """``n`` processes spinning on the CPU, each stopping by itself after ``seconds``."""

    def __init__(self, n: int, seconds: float):
        self.procs = [subprocess.Popen([sys.executable, "-c", BURN, str(seconds)]) for _ in range(n)]

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[5000, 20000, 200000], help="quiet-machine sizes")
    parser.add_argument("--busy-rows", type=int, nargs="*", default=[20000], help="sizes also measured busy")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--reps", type=int, default=2, help="alternating pairs per size and condition")
    parser.add_argument("--burners", type=int, default=2)
    parser.add_argument("--burn-seconds", type=float, default=1800)
    parser.add_argument("overrides", nargs="*", help="config overrides for every run")
    args = parser.parse_args()
    print(f"cores {len(os.sched_getaffinity(0))}, load average before {os.getloadavg()}", flush=True)

    results: dict[tuple[int, str, str], list[float]] = {}
    jobs: dict[tuple[int, str, str], set[str]] = {}
    plan = [(rows, "quiet") for rows in args.rows] + [(rows, "busy") for rows in args.busy_rows]
    for rows, condition in plan:
        for rep in range(args.reps):
            order = ["old", "new"] if rep % 2 == 0 else ["new", "old"]
            for variant in order:
                burners = Burners(args.burners, args.burn_seconds) if condition == "busy" else None
                try:
                    started = time.perf_counter()
                    seconds, used = measure(rows, variant, args.trials, args.overrides)
                finally:
                    if burners:
                        burners.stop()
                results.setdefault((rows, condition, variant), []).append(seconds)
                jobs.setdefault((rows, condition, variant), set()).add(used)
                print(f"{rows:>7} {condition:<5} {variant:<3} rep {rep}: tune {seconds:7.1f} s "
                      f"(n_jobs {used}; whole run {time.perf_counter() - started:.1f} s)", flush=True)

    print("\nrows     condition  old median  new median  new/old (paired)  n_jobs new")
    for rows, condition in plan:
        old, new = results[(rows, condition, "old")], results[(rows, condition, "new")]
        paired = [n / o for n, o in zip(new, old, strict=True)]
        print(f"{rows:<8} {condition:<10} {statistics.median(old):9.1f}s {statistics.median(new):10.1f}s "
              f"{statistics.median(paired):10.3f} ({', '.join(f'{p:.3f}' for p in paired)})  "
              f"{','.join(sorted(jobs[(rows, condition, 'new')]))}")
    for rows in args.busy_rows:
        if rows in args.rows:
            for variant in VARIANTS:
                ratio = statistics.median(results[(rows, "busy", variant)]) / statistics.median(results[(rows, "quiet", variant)])
                print(f"busy/quiet at {rows} rows, {variant}: {ratio:.2f}x")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()

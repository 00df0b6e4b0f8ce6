"""What `make run` costs and gives with each candidate default model (issue 18: whether
`model=auto` becomes the default is decided by the peer benchmark and by `make run`'s time).

Each repetition runs `mlcycle train <variant>` (what `make run ARGS=...` runs) once per
variant, alternating, each in a fresh folder with its own embedded store (a first run: no
cache), and reads the root run's stage times and the test metrics back from the store:

    .venv/bin/python benchmarks/default_model.py                      # seeds 42,1,2,3: ~5 min
    .venv/bin/python benchmarks/default_model.py --seeds 42 --variant "model=auto" --variant "model=random_forest"

Each seed (`seed=`) is another draw of the default data and its split, so the test ROC AUC
is compared on four data sets, not one.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT  # this checkout's src first on sys.path

from mlcycle.config.schema import STAGES

VARIANTS = ("model=hist_gradient_boosting", "model=auto")


def one_run(variant: str, folder: Path) -> dict:
    from mlflow import MlflowClient

    from mlcycle.tracking.runs import KIND_PIPELINE, KIND_TAG, seconds_of

    uri = f"sqlite:///{folder}/mlflow.db"
    env = {**os.environ, "MLCYCLE_ROOT": str(folder), "MLFLOW_TRACKING_URI": uri}
    load = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mlcycle", "train", *variant.split()], env=env, cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    root = client.search_runs(experiments, filter_string=f"tags.`{KIND_TAG}` = '{KIND_PIPELINE}'")[0]
    metrics = root.data.metrics
    return {
        "variant": variant, "load": load, "wall": wall,
        **{stage: seconds_of(metrics, stage) for stage in STAGES},
        "test_roc_auc": metrics.get("test_roc_auc"),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="42,1,2,3", help="one repetition per seed, every variant at that seed")
    parser.add_argument("--variant", action="append", default=None, help=f"overrides (default: {' | '.join(VARIANTS)})")
    args = parser.parse_args(argv)
    variants = tuple(args.variant or VARIANTS)
    results = []
    print("| seed | variant | load | `mlcycle train` wall s | tune s | train s | register s | test ROC AUC |")
    print("|---|---|---|---|---|---|---|---|")
    for seed in (int(s) for s in args.seeds.split(",")):
        for variant in variants:
            folder = Path(tempfile.mkdtemp(prefix="mlcycle-bench-default-"))
            try:
                r = one_run(f"{variant} seed={seed}", folder) | {"variant": variant}
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            results.append(r)
            print(f"| {seed} | {variant} | {r['load']:.2f} | {r['wall']:.1f} | {r['tune']:.1f} | {r['train']:.1f} | "
                  f"{r['register']:.1f} | {r['test_roc_auc']:.4f} |", flush=True)
    print("\n| variant | median wall s | median tune s | ratio to the first variant (wall) | mean test ROC AUC |")
    print("|---|---|---|---|---|")
    base = statistics.median(r["wall"] for r in results if r["variant"] == variants[0])
    for variant in variants:
        walls = [r["wall"] for r in results if r["variant"] == variant]
        tunes = [r["tune"] for r in results if r["variant"] == variant]
        aucs = [r["test_roc_auc"] for r in results if r["variant"] == variant]
        print(f"| {variant} | {statistics.median(walls):.1f} | {statistics.median(tunes):.1f} | "
              f"{statistics.median(walls) / base:.2f} | {statistics.mean(aucs):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

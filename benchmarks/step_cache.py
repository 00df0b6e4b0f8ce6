"""Step caching, measured side by side in one process on the default dataset:

1. cold run (empty store: every stage runs),
2. identical rerun (target: at most 10 % of the cold run's wall time),
3. rerun with only a model hyperparameter range changed (target: no time in
   ingest/preprocess/features beyond restoring their outputs).

Each run is ``pipeline.run`` in this process, after imports and the store's migrations
(neither is part of what caching saves). Per-stage times are the root runs'
``time_<stage>_seconds`` metrics.

    .venv/bin/python benchmarks/step_cache.py                  # 30 trials, 20,000 rows
    .venv/bin/python benchmarks/step_cache.py --trials 5 --rows 5000   # a quick check
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import compose  # this checkout's src first on sys.path

from mlcycle.config.schema import STAGES

DATA_STAGES = ("ingest", "preprocess", "features")
# hist gradient boosting: the default model when the figures in docs/benchmarks.md were measured
MODEL = "model=hist_gradient_boosting"
CHANGE = "model.classifier.search_space.learning_rate.high=0.25"  # its range: 0.3


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary store (printed) for a look in the UI")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="mlcycle-bench-cache-"))
    try:
        return measure(args, root)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def measure(args: argparse.Namespace, root: Path) -> int:
    uri = f"sqlite:///{root}/mlflow.db"
    os.environ.update(MLCYCLE_ROOT=str(root), MLFLOW_TRACKING_URI=uri, MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true")

    from mlflow import MlflowClient

    from mlcycle import pipeline
    from mlcycle.tracking.runs import seconds_of

    client = MlflowClient(uri)
    client.search_experiments()  # runs the store's migrations before any timing
    # the temp root is not a git checkout: the code version is mlcycle's source digest
    common = [MODEL, f"tune.n_trials={args.trials}", f"data.n_rows={args.rows}", "cache.allow_dirty=true", *args.overrides]

    def run(label: str, extra: list[str]) -> dict:
        cfg = compose([*common, *extra])
        started = time.perf_counter()
        result = pipeline.run(cfg)
        wall = time.perf_counter() - started
        root_run = client.get_run(result.run_id)
        children = client.search_runs(
            [result.experiment_id], f"tags.`mlflow.parentRunId` = '{result.run_id}'", max_results=100
        )
        status = {r.info.run_name: r.data.tags.get("mlcycle.cache", "?") for r in children}
        seconds = {s: seconds_of(root_run.data.metrics, s) or float("nan") for s in STAGES}
        print(f"  {label}: {wall:.1f} s", flush=True)
        return {"label": label, "wall": wall, "status": status, "seconds": seconds, "metrics": result.state.test_metrics}

    load_before = os.getloadavg()
    print(f"step cache benchmark: {args.trials} trials, {args.rows} rows, {MODEL}; store {uri}", flush=True)
    cold = run("cold", [])
    same = run("identical rerun", [])
    changed = run(f"rerun, {CHANGE}", [CHANGE])
    load_after = os.getloadavg()

    print()
    header = f"{'run':<{len(changed['label'])}}  {'wall s':>7}  {'vs cold':>7}  " + "  ".join(f"{s:>12}" for s in STAGES)
    print(header)
    for r in (cold, same, changed):
        cells = "  ".join(f"{r['seconds'][s]:>7.2f} {r['status'].get(s, '?'):>4}" for s in STAGES)
        print(f"{r['label']:<{len(changed['label'])}}  {r['wall']:>7.1f}  {r['wall'] / cold['wall']:>6.1%}  {cells}")
    print()
    ratio = same["wall"] / cold["wall"]
    data_time = sum(changed["seconds"][s] for s in DATA_STAGES)
    data_cold = sum(cold["seconds"][s] for s in DATA_STAGES)
    data_hits = all(changed["status"].get(s) == "hit" for s in DATA_STAGES)
    print(f"identical rerun / cold: {ratio:.1%} (target <= 10 %): {'met' if ratio <= 0.10 else 'NOT met'}")
    print(
        f"model-range rerun: ingest+preprocess+features {'all cache hits' if data_hits else 'NOT all hits'}, "
        f"{data_time:.2f} s restoring them (cold: {data_cold:.2f} s computing them)"
    )
    print(f"identical rerun's test metrics equal the cold run's: {same['metrics'] == cold['metrics']}")
    print(
        f"machine: {os.cpu_count()} cores, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
        f"python {sys.version.split()[0]}"
    )
    return 0 if ratio <= 0.10 and data_hits else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

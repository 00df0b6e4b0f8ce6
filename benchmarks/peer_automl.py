"""mlcycle against FLAML (an AutoML library a user would pick instead), at equal wall budget
on the same train/validation/test splits.

For each data set: mlcycle with one family (`model=hist_gradient_boosting`, the default
until issue 18, `tune.n_trials` trials) runs first; its tune stage's wall time is THE budget. Then `model=auto` with
`tune.timeout` = that budget (and no trial limit), once per variant (``--auto``, side by
side in one run: by default the best single configuration of any family
and the greedy ensemble of the families' bests: ``model.ensemble``), then FLAML's `AutoML.fit` with
`time_budget` = that budget on the rows mlcycle fitted on (train + validation; FLAML does
its own validation), scored on mlcycle's test split with mlcycle's own metric code. A
`model=auto` tune stage overshoots its `tune.timeout` (the fold a trial was fitting when
the time ran out, the ensemble selection, a check fit on the validation rows), so FLAML
runs a second time with the wall time the longest `model=auto` tune stage took: "FLAML at
model=auto's time" (`--no-flaml-at-auto` skips it).
Metrics: ROC AUC (binary; macro one-vs-rest for multiclass) and accuracy, R² for regression.

FLAML is never a dependency of mlcycle: it runs in its own virtual environment, a
subprocess that reads the splits from Parquet and writes its test predictions back:

    make flaml-venv      # .venv-flaml: flaml[automl] (FLAML 2.7, LightGBM, XGBoost), pandas, pyarrow
    .venv/bin/python benchmarks/peer_automl.py                          # all four data sets
    .venv/bin/python benchmarks/peer_automl.py --datasets breast_cancer --trials 10   # a quick check
    .venv/bin/python benchmarks/peer_automl.py --auto "" --auto "tune.pruner=median"  # auto variants of your own
    .venv/bin/python benchmarks/peer_automl.py --seeds 1,2,3,4,5   # every system on 5 splits (`seed=`)

With several seeds, each seed is another split of the data (and another draw of the default
generator, its random states, FLAML's seed): a 36-row test set moves accuracy by 0.028 a
row, so one split cannot tell systems apart by 0.005. A summary then gives each system's
mean and its paired difference to FLAML (mean, and the worst seed).

Each row records the 1-minute load average just before that system ran (the machine may be
shared: read close numbers with it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, compose  # this checkout's src first on sys.path

DATASETS = ("ecommerce", "breast_cancer", "wine", "diabetes")
AUTO_VARIANTS = (  # model=auto variants run side by side (issue 18: measured, not assumed)
    "model.ensemble.enabled=false",  # the best single configuration of any family (before the ensemble)
    "model.ensemble.enabled=true",  # + greedy ensemble selection over the families' bests
)
# earlier runs' variants: "tune.cheap_start=false" (a random first round), "tune.cheap_start=true
# tune.fidelity=subsample tune.pruner=successive_halving" (low-fidelity rungs): docs/benchmarks.md
QUIET = ["registry.enabled=false", "report.enabled=false", "evaluate.plots=false", "tune.plots=false",
         "tune.progress_bar=false", "cache.enabled=false"]

# Runs in FLAML's own venv: argv = folder task metric budget seed n_jobs
FLAML_SCRIPT = r"""
import json, sys, time
import pandas as pd
from flaml import AutoML

folder, task, metric, budget, seed, n_jobs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
meta = json.load(open(f"{folder}/meta.json"))
fit, test = pd.read_parquet(f"{folder}/fit.parquet"), pd.read_parquet(f"{folder}/test.parquet")
features, target = meta["features"], meta["target"]
automl = AutoML()
started = time.perf_counter()
automl.fit(fit[features], fit[target], task="regression" if task == "regression" else "classification",
           metric=metric, time_budget=budget, seed=seed, n_jobs=n_jobs, verbose=0)
seconds = time.perf_counter() - started
out = pd.DataFrame({"prediction": automl.predict(test[features])})
if task != "regression":
    proba = automl.predict_proba(test[features])
    for i, cls in enumerate(automl.classes_):
        out[f"p{i}"] = proba[:, i]
    meta_out = {"classes": [c.item() if hasattr(c, "item") else c for c in automl.classes_]}
else:
    meta_out = {}
out.to_parquet(f"{folder}/flaml_predictions.parquet", index=False)
json.dump({**meta_out, "seconds": seconds, "best_estimator": automl.best_estimator}, open(f"{folder}/flaml.json", "w"))
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--trials", type=int, default=20, help="hist gradient boosting's tune.n_trials (sets the budget)")
    parser.add_argument("--flaml-python", default=str(ROOT / ".venv-flaml" / "bin" / "python"))
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 1, help="FLAML's n_jobs (mlcycle: tune.n_jobs auto)")
    parser.add_argument("--auto", action="append", default=None,
                        help="one model=auto variant: extra overrides, space-separated (repeat for several; "
                             f"default: {' | '.join(AUTO_VARIANTS)})")
    parser.add_argument("--seeds", default="42", help="comma-separated: one split (and random state) per seed")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--no-flaml-at-auto", dest="flaml_at_auto", action="store_false",
                        help="skip FLAML's second run, given the wall time model=auto's tune stage took")
    args = parser.parse_args(argv)
    args.auto = AUTO_VARIANTS if args.auto is None else tuple(args.auto)
    if not Path(args.flaml_python).exists():
        print(f"no FLAML environment at {args.flaml_python}: python3 -m venv .venv-flaml && "
              ".venv-flaml/bin/pip install 'flaml[automl]' pandas pyarrow", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="mlcycle-bench-peer-"))
    uri = f"sqlite:///{root}/mlflow.db"
    os.environ.update(MLCYCLE_ROOT=str(root), MLFLOW_TRACKING_URI=uri, MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true")
    from mlflow import MlflowClient

    MlflowClient(uri).search_experiments()  # the store's migrations, before any timing
    results = []
    try:
        for name in args.datasets.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                results += compare(name, args, root, seed)
                print_table(results)
        if "," in args.seeds:
            print_summary(results)
            if args.flaml_at_auto:
                print_summary(results, FLAML_AT_AUTO)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def mlcycle_run(overrides: list[str]) -> tuple[object, dict]:
    """One pipeline run: its State and its tune stage's numbers."""
    from mlflow import MlflowClient

    from mlcycle import pipeline
    from mlcycle.tracking.runs import find_stage, seconds_of

    load = os.getloadavg()[0]
    started = time.perf_counter()
    result = pipeline.run(compose([*QUIET, *overrides]))
    total = time.perf_counter() - started
    client = MlflowClient()
    root = client.get_run(result.run_id)
    tune = find_stage(client, root.info.experiment_id, result.run_id, "tune")
    return result.state, {
        "tune_seconds": seconds_of(tune.data.metrics), "total_seconds": total,
        "trials": tune.data.metrics.get("trials_complete", 0) + tune.data.metrics.get("trials_pruned", 0),
        "best_family": tune.data.params.get("best_family"), "load": load,
        "pruned": tune.data.metrics.get("trials_pruned", 0),
        "family_cv": {k.removeprefix("best_cv_score_"): v for k, v in tune.data.metrics.items()
                      if k.startswith("best_cv_score_")},  # model=auto: the best CV score of each family
        "ensemble_seconds": tune.data.metrics.get("ensemble_seconds"),  # model.ensemble: its selection
        "ensemble": tune.data.params.get("ensemble_members"),
        "cv": next((v for k, v in tune.data.metrics.items() if k.startswith("best_cv_")
                    and not k.startswith("best_cv_score_")), None),
    }


def scores(task, y, y_pred, proba, classes) -> dict[str, float]:
    """R² for regression; ROC AUC and the accuracy of the most probable class otherwise (the
    same rule for every system: mlcycle's own labels follow its decision threshold, chosen
    for F1, which trades accuracy for recall)."""
    import numpy as np

    from mlcycle.core.evaluation import compute_metrics

    if task.value == "regression":
        return {"r2": compute_metrics(task, y, y_pred)["r2"]}
    m = compute_metrics(task, y, np.asarray(classes)[np.argmax(proba, axis=1)], proba, classes)
    return {"roc_auc": m["roc_auc"], "accuracy": m["accuracy"]}


def compare(name: str, args: argparse.Namespace, root: Path, seed: int) -> list[dict]:

    data = [f"data={name}", f"mlflow.experiment_name=peer-{name}-{seed}", f"seed={seed}"]
    state, default = mlcycle_run([*data, "model=hist_gradient_boosting", f"tune.n_trials={args.trials}"])
    budget = max(5.0, round(default["tune_seconds"], 1))
    schema, test = state.schema, state.splits.test
    X, y = test[list(schema.features)], test[schema.target]
    proba = state.model.predict_proba(X) if schema.task.value != "regression" else None
    rows = [{"data": name, "seed": seed, "rows": len(state.data.frame), "system": "mlcycle hist_gradient_boosting", "budget": budget, **default,
             **scores(schema.task, y, state.model.predict(X), proba, schema.classes)}]

    for variant in args.auto:
        auto_state, auto = mlcycle_run([*data, "model=auto", "tune.n_trials=100000", f"tune.timeout={budget}",
                                        *variant.split()])
        proba = auto_state.model.predict_proba(X) if schema.task.value != "regression" else None
        rows.append({"data": name, "seed": seed, "rows": len(state.data.frame), "system": f"mlcycle model=auto {variant}".strip(),
                     "budget": budget, **auto, **scores(schema.task, y, auto_state.model.predict(X), proba, schema.classes)})

    rows.append(flaml_run(name, args, root, seed, state, budget, "FLAML"))
    if args.flaml_at_auto and args.auto:  # the same wall time as model=auto's whole tune stage took (selection included)
        longest = max(r["tune_seconds"] for r in rows if r["system"].startswith("mlcycle model=auto"))
        rows.append(flaml_run(name, args, root, seed, state, round(longest, 1), FLAML_AT_AUTO))
    return rows


FLAML_AT_AUTO = "FLAML at model=auto's time"


def flaml_run(name: str, args: argparse.Namespace, root: Path, seed: int, state, budget: float, system: str) -> dict:
    """FLAML's AutoML.fit with ``budget`` seconds, in its own venv, on mlcycle's train +
    validation rows, scored on mlcycle's test split."""
    import numpy as np
    import pandas as pd

    schema, test = state.schema, state.splits.test
    y = test[schema.target]
    folder = root / f"flaml-{name}-{seed}-{budget}"
    folder.mkdir()
    fit = pd.concat([state.splits.train, state.splits.validation], ignore_index=True)
    cols = [*schema.features, schema.target]
    fit[cols].to_parquet(folder / "fit.parquet", index=False)
    test[cols].to_parquet(folder / "test.parquet", index=False)
    (folder / "meta.json").write_text(json.dumps({"features": list(schema.features), "target": schema.target}))
    metric = {"binary": "roc_auc", "multiclass": "roc_auc_ovr", "regression": "r2"}[schema.task.value]
    script = folder / "run_flaml.py"
    script.write_text(FLAML_SCRIPT)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run([args.flaml_python, str(script), str(folder), schema.task.value, metric, str(budget),
                    str(seed), str(args.n_jobs)], check=True)
    total = time.perf_counter() - started
    out = json.loads((folder / "flaml.json").read_text())
    predictions = pd.read_parquet(folder / "flaml_predictions.parquet")
    proba = None
    if schema.task.value != "regression":
        order = [out["classes"].index(c) for c in schema.classes]  # FLAML's columns in mlcycle's class order
        proba = predictions[[f"p{i}" for i in order]].to_numpy()
    return {"data": name, "seed": seed, "rows": len(state.data.frame), "system": system, "budget": budget,
            "tune_seconds": out["seconds"], "total_seconds": total, "trials": None,
            "best_family": out["best_estimator"], "load": load,
            **scores(schema.task, y, np.asarray(predictions["prediction"]), proba, schema.classes)}


def print_table(results: list[dict]) -> None:
    print("\n| data | seed | rows | system | load | budget s | search s | total s | trials (pruned) | best family | ROC AUC | "
          "accuracy | R² |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    def number(r: dict, key: str, digits: int = 4) -> str:
        return f"{r[key]:.{digits}f}" if r.get(key) is not None else ""

    for r in results:
        f = lambda key, digits=4, r=r: number(r, key, digits)  # noqa: E731
        trials = f"{r['trials']:.0f} ({r.get('pruned', 0):.0f})" if r["trials"] is not None else ""
        print(f"| {r['data']} | {r['seed']} | {r['rows']:,} | {r['system']} | {f('load', 2)} | {r['budget']:.0f} | {f('tune_seconds', 1)} | "
              f"{f('total_seconds', 1)} | {trials} | {r['best_family'] or ''} | "
              f"{f('roc_auc')} | {f('accuracy')} | {f('r2')} |")
    sys.stdout.flush()


SCORES = ("roc_auc", "accuracy", "r2")


def print_summary(results: list[dict], reference: str = "FLAML") -> None:
    """Each system's mean over the seeds, and its paired difference to ``reference`` on the
    same split: the mean and the worst seed (the target: within 0.005 ROC AUC / accuracy,
    0.02 R²)."""
    import numpy as np

    flaml = {(r["data"], r["seed"]): r for r in results if r["system"] == reference}
    print(f"\n| data | system | seeds | mean search s | ROC AUC | accuracy | R² | "
          f"vs {reference}: ROC AUC mean (worst) | accuracy mean (worst) | R² mean (worst) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for data, system in dict.fromkeys((r["data"], r["system"]) for r in results):
        rows = [r for r in results if (r["data"], r["system"]) == (data, system)]
        means, gaps = [], []
        for key in SCORES:
            values = [r[key] for r in rows if r.get(key) is not None]
            diffs = [r[key] - flaml[data, r["seed"]][key] for r in rows if r.get(key) is not None]
            means.append(f"{np.mean(values):.4f}" if values else "")
            gaps.append(f"{np.mean(diffs):+.4f} ({min(diffs):+.4f})" if diffs and system != reference else "")
        search = np.mean([r["tune_seconds"] for r in rows])
        print(f"| {data} | {system} | {len(rows)} | {search:.1f} | {' | '.join(means)} | {' | '.join(gaps)} |")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

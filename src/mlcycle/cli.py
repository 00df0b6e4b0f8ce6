"""Command line: ``mlcycle <command> [args]``. The only module that reads argv.

Each command lives in ``COMMANDS`` as "module:function" and is imported only when used, so
``mlcycle --help`` and configuration errors answer without importing MLflow.
"""

from __future__ import annotations

import importlib
import shlex
import sys

USAGE = """usage: mlcycle <command> [args...]

commands:
  train [overrides...]     run the pipeline (Hydra overrides; -m for a multirun sweep)
  generate-data            write the default e-commerce dataset to a CSV file
  report <run id>          write a pipeline run's report card again (--out FILE for a local copy)
  runs close-stale         end runs left RUNNING by a killed process (FAILED, with the reason)
  promote                  move `champion` to a version through the gate (--force skips it)
  rollback                 move `champion` back to the previous champion
  models                   list registered versions, aliases, metrics and promotion history
  predict                  batch-score a CSV/Parquet file with the champion (or any model URI)
  reproduce <model|run>    rerun a registered version's (or run's) pipeline from its lineage
                           and check that its test metrics match exactly
  tune-worker              join a tuning study from another process or machine
  monitor [overrides...]   drift/decay of the champion on a new batch; retrain on the verdict
  retrain <monitor-run-id> retrain on a monitoring run's batch (what monitor does on decay)

Run 'mlcycle <command> --help' for a command's options; 'mlcycle train --help' shows the
configuration groups. Examples:
  mlcycle train model=random_forest tune.n_trials=10
  mlcycle train -m model=logistic_regression,random_forest,hist_gradient_boosting
  mlcycle train data=csv data.path=sessions.csv data.target=purchased
  mlcycle promote --alias challenger
  mlcycle predict --input sessions.csv --output scored.parquet
  mlcycle train cache=false                  # run every stage (no step cache)
  mlcycle reproduce models:/mlcycle-ecommerce/1
"""

# command -> "module:function"; each function takes argv (list[str]) and returns an exit code
COMMANDS: dict[str, str] = {
    "train": "mlcycle.commands.train:main",
    "generate-data": "mlcycle.commands.generate_data:main",
    "report": "mlcycle.commands.report:main",
    "runs": "mlcycle.commands.runs:main",
    "promote": "mlcycle.commands.promote:main",
    "rollback": "mlcycle.commands.rollback:main",
    "models": "mlcycle.commands.models:main",
    "predict": "mlcycle.commands.predict:main",
    "reproduce": "mlcycle.commands.reproduce:main",
    "tune-worker": "mlcycle.commands.tune_worker:main",
    "monitor": "mlcycle.commands.monitor:main",
    "retrain": "mlcycle.commands.retrain:main",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from mlcycle import __version__

        print(f"mlcycle {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    target = COMMANDS.get(command)
    if target is None:
        print(f"error: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module_name, _, function = target.partition(":")
    return int(getattr(importlib.import_module(module_name), function)(rest) or 0)


def expand_overrides(args: list[str]) -> list[str]:
    """Split ``--overrides "a=1 b=2"`` (how ``mlflow run`` passes its free-form parameter)
    into separate overrides; when a key is given twice, the later value wins."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--overrides":
            out.extend(shlex.split(args[i + 1]) if i + 1 < len(args) else [])
            i += 2
            continue
        if arg.startswith("--overrides="):
            out.extend(shlex.split(arg.partition("=")[2]))
        else:
            out.append(arg)
        i += 1
    return _last_wins(out)


def _last_wins(args: list[str]) -> list[str]:
    def key(arg: str) -> str | None:
        if arg.startswith("-") or "=" not in arg or arg.startswith(("+", "~")):
            return None
        return arg.split("=", 1)[0].removeprefix("++")

    last = {key(a): i for i, a in enumerate(args) if key(a) is not None}
    return [a for i, a in enumerate(args) if key(a) is None or last[key(a)] == i]


if __name__ == "__main__":
    raise SystemExit(main())

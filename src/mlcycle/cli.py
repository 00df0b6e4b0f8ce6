"""Command line: ``mlcycle <command> [args]``. One argv path for every command:

argv -> ``normalize`` (the one rewrite) -> the command (it composes the config once) ->
``handle`` (the one error handler: a one-line message with secrets masked, an exit code).
Commands are declared with ``@command``, which applies both, so calling a command's
``main`` directly (tests, ``python -m``) behaves like the CLI.

Each command lives in ``COMMANDS`` as "module:function" and is imported only when used, so
``mlcycle --help`` and configuration errors answer without importing MLflow.
"""

from __future__ import annotations

import functools
import importlib
import os
import shlex
import signal
import sys
import traceback
from collections.abc import Callable

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
  serve                    verify the champion's files, then serve it on 127.0.0.1:5001
  reproduce <model|run>    rerun a registered version's (or run's) pipeline from its lineage
                           and check that its test metrics match exactly
  tune-worker              join a tuning study from another process or machine
  monitor [overrides...]   drift/decay of the champion on a new batch; retrain on the verdict
  retrain <monitor-run-id> retrain on a monitoring run's batch (what monitor does on decay)
  db check | upgrade       is the tracking database's schema this MLflow's? upgrade: back up,
                           migrate, compare row counts (needed after an MLflow upgrade)
  ui                       the MLflow UI for the project's store, opened on the runs table

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
    "serve": "mlcycle.commands.serve:main",
    "reproduce": "mlcycle.commands.reproduce:main",
    "tune-worker": "mlcycle.commands.tune_worker:main",
    "monitor": "mlcycle.commands.monitor:main",
    "retrain": "mlcycle.commands.retrain:main",
    "db": "mlcycle.commands.db:main",
    "ui": "mlcycle.commands.ui:main",
}

# Options that are switches (store_true). `mlflow run` passes every declared parameter, so an
# MLproject entry point writes them as --force=true / --force=false.
SWITCHES = frozenset({"--force", "--register", "--show", "--dry-run", "--quiet", "--no-log"})
# `cache` is a config group, and Hydra rejects a boolean as a group choice.
SHORTHANDS = {"cache=false": "cache.enabled=false", "cache=true": "cache.enabled=true"}
DEBUG_HINT = " (MLCYCLE_DEBUG=1 shows the traceback)"


# Set by deploy/kubernetes/kubernetes_job_template.yaml: MLflow's Kubernetes backend quotes
# each word of the entry point's command for a shell (shlex.quote), but the container runs
# it without one, so a word with a space or a quote arrives with the quotes in it.
QUOTED_ARGV_ENV = "MLCYCLE_ARGV_SHELL_QUOTED"


def main(argv: list[str] | None = None) -> int:
    argv = process_argv() if argv is None else list(argv)
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


def process_argv() -> list[str]:
    """This process's arguments; under ``QUOTED_ARGV_ENV`` each word unquoted once (the
    shell MLflow quoted it for would have done that)."""
    argv = sys.argv[1:]
    if os.environ.get(QUOTED_ARGV_ENV, "").lower() not in ("1", "true", "yes"):
        return argv
    return [words[0] if len(words := shlex.split(arg)) == 1 else arg for arg in argv]


def command(fn: Callable[[list[str]], int | None]) -> Callable[[list[str]], int]:
    """Declare a command: its argv is normalized once and its errors handled by ``handle``."""

    @functools.wraps(fn)
    def run(argv: list[str]) -> int:
        return handle(lambda: fn(normalize(argv)))

    return run


# --------------------------------------------------------------------------- argv
def normalize(args: list[str]) -> list[str]:
    """The one argv rewrite, the same for every command:

    * ``--overrides "a=1 b=2"`` (how ``mlflow run`` passes its free-form parameter) becomes
      separate items (shell-quoted like a command line);
    * ``--force=true`` / ``--force=false`` become the switch or nothing; ``--opt=`` (an empty
      MLproject parameter) is left out: not given;
    * ``cache=false`` / ``cache=true`` become ``cache.enabled=...``;
    * when an override sets the same key twice, the later value wins.
    """
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        key, eq, value = arg.partition("=")
        if arg == "--overrides":
            out += shlex.split(args[i + 1]) if i + 1 < len(args) else []
            i += 1
        elif key == "--overrides" and eq:
            out += shlex.split(value)
        elif key in SWITCHES and eq:
            out += [key] if value.strip().lower() in ("true", "1", "yes") else []
        elif arg.startswith("--") and eq and not value:
            pass
        else:
            out.append(SHORTHANDS.get(arg.lower(), arg))
        i += 1
    return _last_wins(out)


def _last_wins(args: list[str]) -> list[str]:
    def key(arg: str) -> str | None:
        if arg.startswith(("-", "+", "~")) or "=" not in arg:
            return None
        return arg.split("=", 1)[0]

    last = {key(a): i for i, a in enumerate(args) if key(a) is not None}
    return [a for i, a in enumerate(args) if key(a) is None or last[key(a)] == i]


# --------------------------------------------------------------------------- errors
def handle(body: Callable[[], int | None]) -> int:
    """The one error handler: run a command's body; a failure becomes one line on stderr
    (secrets masked, where it happened first) and an exit code. ``mlcycle.errors`` says
    which exit code each error has."""
    from mlcycle.errors import JobFailed

    try:
        return int(body() or 0)
    except JobFailed as wrapped:
        error: BaseException = wrapped.error
    except (SystemExit, GeneratorExit):
        raise  # argparse's --help and usage errors exit on their own
    except BaseException as exc:
        error = exc
    code, line = explain(error)
    if os.environ.get("MLCYCLE_DEBUG"):
        traceback.print_exception(error)
    print(line, file=sys.stderr)
    return code


def explain(error: BaseException) -> tuple[int, str]:
    """(exit code, one line) for an error that ended a command."""
    from mlcycle.core.masking import mask_text
    from mlcycle.errors import MlcycleError, PipelineTerminated

    where = _where(error)
    if isinstance(error, MlcycleError):
        # a monitor's triggered retrain that failed: the verdict stands, the action failed (1)
        code = 1 if "retrain" in getattr(error, "__notes__", []) else error.exit_code
        return code, f"error: {where}{mask_text(str(error))}"
    if isinstance(error, PipelineTerminated):
        return 128 + signal.SIGTERM, f"error: {where}{error}; the open runs were ended KILLED"
    if isinstance(error, KeyboardInterrupt):
        return 128 + signal.SIGINT, f"error: {where}interrupted"
    text = str(getattr(error, "message", None) or error).strip()  # MlflowException keeps it in .message
    first = mask_text(text.splitlines()[0]) if text else ""
    hint = "" if os.environ.get("MLCYCLE_DEBUG") else DEBUG_HINT
    return 1, f"error: {where}{type(error).__name__}: {first}{hint}"


def _where(error: BaseException) -> str:
    """Where it happened, from the notes the pipeline and the monitor add."""
    notes = getattr(error, "__notes__", [])
    if "retrain" in notes:  # a monitor's triggered retrain: its own root run says which stage
        return "retrain: "
    stage = next((n for n in notes if n.startswith("stage ")), None)
    return f"[{stage}] " if stage else ""


if __name__ == "__main__":
    raise SystemExit(main())

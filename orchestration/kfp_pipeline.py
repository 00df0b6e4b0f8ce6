"""Kubeflow Pipelines (KFP v2): mlcycle's loop, train -> monitor -> decide -> retrain.

    train ──▶ monitor ──▶ decide ──▶ retrain        (verdict at or above retrain_on)

The same loop as orchestration/airflow_dag.py, with the training in front. Each task is a
lightweight Python component that runs one of mlcycle's own commands (``python -m mlcycle``)
in an image with mlcycle installed; this file imports nothing from mlcycle, so KFP can live
in an environment of its own. mlcycle caches its steps itself: KFP's caching is off.

* ``mlcycle-loop``: ``train`` (one pipeline run: a root run and its seven stages; outputs
  the root run id, the registered model and version, whether it was promoted), ``monitor``
  (the champion of that model on a new batch; outputs the monitoring run id, its verdict and
  exit code), ``decide`` (one bool, so that ``dsl.If`` can branch on it), ``retrain``
  (``mlcycle retrain <monitoring run>``; a new root run tagged ``mlcycle.triggered_by``).
* ``mlcycle-loop-big-study``: the same loop, trained on a study that ``tune_workers``
  ``tune-worker`` tasks fill side by side first (a ParallelFor): ``open-study`` runs the
  pipeline up to its tune stage (one trial) so that the study and its objective exist,
  the workers join it with ``--n-trials n_trials``, and ``train`` then resumes the study
  (nothing left to run) and goes on to train, evaluate and register. The study must live in
  a storage the workers share: ``tune_storage`` (PostgreSQL; the password from
  ``PGPASSWORD``, never in the URL, since KFP shows and logs parameters).

Lists of overrides are lists (JSON), one override per item, handed to the CLI as argv: a
string split with ``shlex.split`` would lose the inner quotes of an override such as
``monitor.retrain_overrides=["tune.n_trials=5"]``.

Every task reads its settings from the environment: ``MLFLOW_TRACKING_URI`` and the
credentials (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` or ``_TOKEN``), ``PGPASSWORD``,
``MLCYCLE_TUNE_STORAGE``, all optional keys of the Kubernetes secret ``mlcycle-tracking``
(KFP's MLflow integration sets the tracking URI and credentials itself). With that
integration, ``MLFLOW_RUN_ID`` names the task's own MLflow run (nested under the pipeline
run's) and mlcycle uses it as its root run: the train task's run holds the seven stages.

Compile: ``make kfp-compile`` (writes kfp_pipeline.yaml and kfp_big_study.yaml beside this
file; ``MLCYCLE_KFP_IMAGE`` names the image, default ``mlcycle:0.1.0``, see the Dockerfile).
"""

# no `from __future__ import annotations`: KFP reads the components' types from their annotations
import os
import sys
from pathlib import Path
from typing import NamedTuple

from kfp import compiler, dsl, kubernetes

IMAGE = os.environ.get("MLCYCLE_KFP_IMAGE", "mlcycle:0.1.0")
SECRET = "mlcycle-tracking"
SECRET_KEYS = (
    "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
    "PGPASSWORD", "MLCYCLE_TUNE_STORAGE",
)
HERE = Path(__file__).resolve().parent
OUTPUTS = {"mlcycle-loop": HERE / "kfp_pipeline.yaml", "mlcycle-loop-big-study": HERE / "kfp_big_study.yaml"}

# The image provides kfp (the component's runner) and mlcycle: nothing is pip-installed when
# a task starts (which also lets KFP's local runner run a ParallelFor's tasks side by side).
component = dsl.component(base_image=IMAGE, install_kfp_package=False)


@component
def train(
    overrides: list, tune_storage: str = "", n_trials: int = 0,
) -> NamedTuple("TrainOutputs", [("root_run_id", str), ("registered_model", str), ("registered_version", str), ("promoted", bool)]):
    """``mlcycle train <overrides>``: a root run with its seven stages."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        settings = ([f"tune.storage={tune_storage}"] if tune_storage else []) + ([f"tune.n_trials={n_trials}"] if n_trials else [])
        subprocess.run(
            [sys.executable, "-m", "mlcycle", "train", "--result-file", result, f"hydra.run.dir={tmp}/hydra",
             *overrides, *settings],
            check=True,
        )
        with open(result) as f:
            out = json.load(f)
    return (out["run_id"], out["registered_model"] or "", out["registered_version"] or "", bool(out["promoted"]))


@component
def open_study(overrides: list, tune_storage: str) -> str:
    """The pipeline up to its tune stage, one trial: the study and the objective that
    ``tune-worker`` tasks join. Returns the root run id."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        subprocess.run(
            [sys.executable, "-m", "mlcycle", "train", "--result-file", result, f"hydra.run.dir={tmp}/hydra",
             *overrides, f"tune.storage={tune_storage}", "tune.n_trials=1",
             "stages=[ingest,preprocess,features,tune]", "cache.force=[tune]"],
            check=True,
        )
        with open(result) as f:
            return json.load(f)["run_id"]


@component
def worker_slots(pipeline_run_id: str, n: int) -> list:
    """One ParallelFor item per tune worker, each carrying the run to join. (Inside a
    ParallelFor, KFP 2.17's local runner hands every input that comes from another task's
    output the loop item instead: what a worker needs travels in the item.)"""
    if n < 1:
        raise ValueError(f"tune_workers must be at least 1, got {n}")
    return [{"pipeline_run_id": pipeline_run_id, "worker": i} for i in range(1, n + 1)]


@component
def tune_worker(pipeline_run_id: str, tune_storage: str, n_trials: int, worker: int):
    """``mlcycle tune-worker``: trials of the study until it has ``n_trials`` finished."""
    import subprocess
    import sys

    print(f"tune worker {worker} joins the study of pipeline run {pipeline_run_id}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "mlcycle", "tune-worker", "--tune-run-id", pipeline_run_id, "--storage", tune_storage,
         "--n-trials", str(n_trials), "--quiet"],
        check=True,
    )


@component
def monitor(
    model_name: str, batch_overrides: list, monitor_overrides: list,
) -> NamedTuple("MonitorOutputs", [("monitoring_run_id", str), ("verdict", str), ("exit_code", int)]):
    """``mlcycle monitor``: the model's champion on a new batch; never retrains itself."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        watched = [f"monitor.model_name={model_name}"] if model_name else []
        code = subprocess.run(
            [sys.executable, "-m", "mlcycle", "monitor", *watched, *batch_overrides, *monitor_overrides,
             "monitor.retrain_on=never", f"monitor.result_file={result}"],
        ).returncode
        if code not in (0, 10, 11):  # ok, drift, decay
            raise RuntimeError(f"mlcycle monitor failed with exit code {code}")
        with open(result) as f:
            out = json.load(f)
    return (out["run_id"], out["verdict"], int(out["exit_code"]))


@component
def decide(exit_code: int, retrain_on: str) -> bool:
    """Retrain when the verdict's exit code is at or above the one of ``retrain_on``."""
    EXIT_CODES = {"ok": 0, "drift": 10, "decay": 11}  # mlcycle.monitoring.monitor.EXIT_CODES
    if retrain_on == "never":
        return False
    if retrain_on not in ("drift", "decay"):
        raise ValueError(f"retrain_on must be decay, drift or never, got {retrain_on!r}")
    return exit_code >= EXIT_CODES[retrain_on]


@component
def retrain(
    monitoring_run_id: str, overrides: list,
) -> NamedTuple("RetrainOutputs", [("root_run_id", str), ("registered_version", str), ("promoted", bool)]):
    """``mlcycle retrain <monitoring run>``: reference + labelled batch, a new root run."""
    import json
    import os
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        subprocess.run(
            [sys.executable, "-m", "mlcycle", "retrain", monitoring_run_id, "--result-file", result, *overrides],
            check=True,
        )
        with open(result) as f:
            out = json.load(f)
    return (out["run_id"], out["registered_version"] or "", bool(out["promoted"]))


def _task(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """KFP caching off (mlcycle caches its steps itself) and the settings secret mounted."""
    task.set_caching_options(False)
    kubernetes.use_secret_as_env(task, SECRET, {key: key for key in SECRET_KEYS}, optional=True)
    return task


class LoopOutputs(NamedTuple):
    root_run_id: str
    registered_version: str
    promoted: bool
    monitoring_run_id: str
    verdict: str
    retrained: bool


def _watch(trained: dsl.PipelineTask, batch_overrides, monitor_overrides, retrain_on, retrain_overrides) -> LoopOutputs:
    """monitor -> decide -> retrain, after ``trained``; the pipeline's outputs."""
    watched = _task(monitor(
        model_name=trained.outputs["registered_model"], batch_overrides=batch_overrides,
        monitor_overrides=monitor_overrides,
    ))
    decision = _task(decide(exit_code=watched.outputs["exit_code"], retrain_on=retrain_on))
    with dsl.If(decision.output == True, name="verdict-calls-for-retrain"):  # noqa: E712 (a KFP condition)
        _task(retrain(monitoring_run_id=watched.outputs["monitoring_run_id"], overrides=retrain_overrides))
    return LoopOutputs(
        trained.outputs["root_run_id"], trained.outputs["registered_version"], trained.outputs["promoted"],
        watched.outputs["monitoring_run_id"], watched.outputs["verdict"], decision.output,
    )


@dsl.pipeline(name="mlcycle-loop", description="Train, monitor the champion on a batch, retrain on the verdict")
def mlcycle_loop(
    train_overrides: list = [],  # noqa: B006 (KFP reads defaults from the signature)
    batch_overrides: list = [],  # noqa: B006
    monitor_overrides: list = [],  # noqa: B006
    retrain_on: str = "decay",
    retrain_overrides: list = [],  # noqa: B006
) -> LoopOutputs:
    trained = _task(train(overrides=train_overrides))
    return _watch(trained, batch_overrides, monitor_overrides, retrain_on, retrain_overrides)


@dsl.pipeline(
    name="mlcycle-loop-big-study",
    description="The mlcycle loop, trained on a study that tune_workers tune-worker tasks fill side by side",
)
def mlcycle_loop_big_study(
    tune_storage: str,
    n_trials: int = 200,
    tune_workers: int = 4,
    train_overrides: list = [],  # noqa: B006
    batch_overrides: list = [],  # noqa: B006
    monitor_overrides: list = [],  # noqa: B006
    retrain_on: str = "decay",
    retrain_overrides: list = [],  # noqa: B006
) -> LoopOutputs:
    study = _task(open_study(overrides=train_overrides, tune_storage=tune_storage))
    slots = _task(worker_slots(pipeline_run_id=study.output, n=tune_workers))
    with dsl.ParallelFor(slots.output, name="tune-workers") as slot:
        workers = _task(tune_worker(
            pipeline_run_id=slot.pipeline_run_id, tune_storage=tune_storage, n_trials=n_trials, worker=slot.worker,
        ))
    trained = _task(train(overrides=train_overrides, tune_storage=tune_storage, n_trials=n_trials)).after(workers)
    return _watch(trained, batch_overrides, monitor_overrides, retrain_on, retrain_overrides)


PIPELINES = {"mlcycle-loop": mlcycle_loop, "mlcycle-loop-big-study": mlcycle_loop_big_study}


def compile_all(folder: Path = HERE) -> list[Path]:
    """Write each pipeline's YAML (the files that ship beside this module)."""
    written = []
    for name, pipeline in PIPELINES.items():
        path = Path(folder) / OUTPUTS[name].name
        compiler.Compiler().compile(pipeline, str(path))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in compile_all(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(f"wrote {path}")

"""``mlcycle train [overrides...]``: the Hydra application that runs the pipeline.

Hydra composes the config, once (``hydra.main``: multirun sweeps, ``--cfg``, ``--help``
and its run directories come with it); ``Precheck`` checks it before anything is written,
``MaskedRecord`` writes Hydra's record of the run without its secrets, and ``job`` is a thin
wrapper over ``pipeline.run``. Hydra's errors and the job's are raised to the CLI's one
handler, not printed by Hydra.
"""

from __future__ import annotations

import copy
import os
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback

from mlcycle.cli import command
from mlcycle.errors import JobFailed


@command
def main(args: list[str]) -> int:
    import hydra

    from mlcycle.commands._common import RESULT_OPTION, pop_result_file
    from mlcycle.config.load import config_dir, config_errors, pinned_environment, register_configs
    from mlcycle.errors import ConfigError

    result_file, args = pop_result_file(args)
    if result_file and {"-m", "--multirun"} & set(args):
        raise ConfigError(f"{RESULT_OPTION} describes one run; it cannot be used with a multirun (-m)")

    def task(cfg) -> None:
        job(cfg, result_file)

    register_configs()
    app = hydra.main(config_path=str(config_dir()), config_name="config", version_base="1.3")(task)
    saved = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["mlcycle train", *args]  # hydra.main reads its overrides from sys.argv
    os.environ["HYDRA_FULL_ERROR"] = "1"  # raise a bad override instead of printing it
    try:
        with config_errors(), pinned_environment():  # hydra.job.chdir=true may move the process
            app()
    finally:
        sys.argv = saved[0]
        if saved[1] is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    return 0


def job(cfg, result_file: str | None = None) -> None:
    """One Hydra job: the typed config, the pipeline, a summary (and the result file)."""
    started = time.perf_counter()
    try:
        from hydra.utils import get_original_cwd

        from mlcycle import pipeline
        from mlcycle.config.load import typed

        # user paths are relative to where the command started, not to Hydra's job directory
        result = pipeline.run(typed(cfg, start=Path(get_original_cwd())))
    except BaseException as exc:
        raise JobFailed(exc) from exc  # past Hydra's own handling, to cli.handle
    print(summary(result, time.perf_counter() - started))
    if result_file:
        from mlcycle.commands._common import write_result

        write_result(outcome(result), result_file)


def outcome(result) -> dict:
    """What an orchestrator reads back: the root run and what it registered."""
    state = result.state
    return {
        "run_id": result.run_id,
        "experiment_id": result.experiment_id,
        "registered_model": state.registered_name,
        "registered_version": state.registered_version,
        "aliases": list(state.aliases),
        "promoted": state.promoted,
        "test_metrics": state.test_metrics,
    }


class Precheck(Callback):
    """Hydra calls it once the config is composed and before it creates the run directory
    (conf/hydra/default.yaml registers it): a bad value (an unknown key, an estimator
    parameter scikit-learn would refuse), a missing data file or an unreachable store fail
    here in seconds, before MLflow is imported, leaving nothing on disk. (Each job of a multirun sweep is checked by the pipeline instead.)"""

    def on_run_start(self, config, **kwargs) -> None:
        _escaping(self.check, config)

    @staticmethod
    def check(config) -> None:
        from omegaconf import open_dict, read_write

        from mlcycle.config.load import typed
        from mlcycle.config.schema import Source
        from mlcycle.core.tables import resolve_path
        from mlcycle.errors import DataError
        from mlcycle.tracking.remote import check_tracking_store, resolve_tracking_uri

        task = copy.deepcopy(config)
        with read_write(task), open_dict(task):
            del task["hydra"]
        cfg = typed(task)
        if cfg.data.source is Source.file and not (path := resolve_path(cfg.data.path or "")).is_file():
            raise DataError(f"data file not found: {path}")
        if "tune" in cfg.stages:  # the tune stage's own precheck, before the run directory exists
            from mlcycle.core.modeling import check_model

            check_model(cfg.model)
        check_tracking_store(resolve_tracking_uri(cfg.mlflow.tracking_uri), cfg.mlflow.connect_timeout)


class MaskedRecord(Callback):
    """Hydra's record of a run without a secret in it (a password in the tracking URI or in
    ``tune.storage``): ``<run dir>/<subdir>/{config,hydra,overrides}.yaml`` and a sweep's
    ``multirun.yaml``. conf/hydra/default.yaml sets ``hydra.output_subdir`` to null, so Hydra
    writes no record of its own; this callback writes it, masked (``core.masking``), as each
    job starts. A multirun's overrides become references to secrets only this process holds
    (``config.load.stash_secrets``) before Hydra writes ``multirun.yaml`` or logs them."""

    def __init__(self, subdir: str = ".hydra") -> None:
        self.subdir = subdir

    def on_run_start(self, config, **kwargs) -> None:
        _escaping(self._refuse_output_subdir, config)

    def on_multirun_start(self, config, **kwargs) -> None:
        _escaping(self._keep_secrets_out_of_the_sweep, config)

    def on_job_start(self, config, **kwargs) -> None:
        _escaping(self._write, config)

    def _refuse_output_subdir(self, config) -> None:
        from mlcycle.errors import ConfigError

        if config.hydra.output_subdir is not None:
            raise ConfigError(
                f"hydra.output_subdir={config.hydra.output_subdir}: Hydra would write the config there "
                f"unmasked; mlcycle writes it masked (hydra.callbacks.record.subdir={self.subdir})"
            )

    def _keep_secrets_out_of_the_sweep(self, config) -> None:
        from omegaconf import OmegaConf, open_dict, read_write

        from mlcycle.config.load import stash_secrets
        from mlcycle.core.masking import mask_override, mask_tree

        self._refuse_output_subdir(config)
        with read_write(config), open_dict(config):
            overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
            config.hydra.overrides.task = [stash_secrets(o) for o in overrides]  # what the jobs compose
            config.hydra.job.override_dirname = mask_override(str(config.hydra.job.override_dirname))
            values = OmegaConf.to_container(config, resolve=False)  # the jobs compose their own
            values.pop("hydra")
            _assign_changed(config, values, mask_tree(values))

    def _write(self, config) -> None:
        from omegaconf import OmegaConf

        from mlcycle.core.masking import mask_override, mask_tree

        values = OmegaConf.to_container(config, resolve=False)
        hydra = values.pop("hydra")
        for kind in ("task", "hydra"):
            hydra["overrides"][kind] = [mask_override(o) for o in hydra["overrides"][kind]]
        folder = Path(config.hydra.runtime.output_dir) / self.subdir
        folder.mkdir(parents=True, exist_ok=True)
        records = {"config.yaml": mask_tree(values), "hydra.yaml": {"hydra": mask_tree(hydra)},
                   "overrides.yaml": hydra["overrides"]["task"]}
        for name, record in records.items():
            (folder / name).write_text(OmegaConf.to_yaml(record))


def _escaping(check, config) -> None:
    """Hydra turns a callback's Exception into a warning: carry it to cli.handle instead."""
    try:
        check(config)
    except BaseException as exc:
        raise JobFailed(exc) from exc


def _assign_changed(node, before, after) -> None:
    """Set in an OmegaConf node the leaves where ``after`` differs from ``before``."""
    for key in before if isinstance(before, dict) else range(len(before)):
        if before[key] == after[key]:
            continue
        if isinstance(before[key], dict | list) and isinstance(after[key], dict | list):
            _assign_changed(node[key], before[key], after[key])
        else:
            node[key] = after[key]


def summary(result, seconds: float) -> str:
    from mlcycle.core.masking import mask_text
    from mlcycle.tracking import ui

    state = result.state
    metrics = {f"cv_{state.metric}": state.cv_score} if state.cv_score is not None else {}
    metrics |= {f"test_{k}": v for k, v in state.test_metrics.items()}
    lines = [f"mlcycle: run {result.run_id} finished in {seconds:.1f} s ({mask_text(result.tracking_uri)})"]
    if metrics:
        lines.append("  " + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    if state.registered_version:
        lines.append(f"  registered {state.registered_name} version {state.registered_version} ({', '.join(state.aliases)})")
        if state.gate_summary:
            lines.append(f"  {'promoted' if state.promoted else 'NOT promoted'}: {state.gate_summary}")
    if where := ui.browse(result.tracking_uri, ui.run_path(result.experiment_id, result.run_id)):
        lines.append(f"  browse: {where}")
    return "\n".join(lines)

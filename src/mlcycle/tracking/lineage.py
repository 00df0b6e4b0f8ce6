"""Lineage: what a pipeline run was made from, and the way back to it.

* ``git_state`` and ``fingerprint``: the commit a run was made from, and a stable hash of
  its resolved config (root-run tags ``mlcycle.git_commit``, ``mlcycle.config_fingerprint``);
* ``source_digest`` and ``code_version``: what a stage's outputs depend on besides config and
  data (mlcycle's version, git commit, a digest of mlcycle's own source, Python and the
  numerical libraries). The step cache (``cache.py``) hashes it into every fingerprint.
* ``log_environment``: ``environment/conda.yaml`` and ``environment/requirements.txt`` (every
  installed distribution, exact versions) as artifacts of the root run.
* ``trace``: from ``models:/<name>/<version>``, ``models:/<name>@<alias>`` or a run id back to
  the ROOT run and what it recorded: resolved config, data source and digest, git commit,
  environment, seed, test metrics.
* ``reproduction_config`` and ``compare``: what ``mlcycle reproduce`` runs and reports.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import platform
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

import mlcycle
from mlcycle.config.load import config_dir, from_resolved
from mlcycle.config.schema import Config, Source
from mlcycle.errors import ConfigError, LineageError, first_line
from mlcycle.tracking.model_io import resolve_uri
from mlcycle.tracking.registry import TAG_ROOT_RUN
from mlcycle.tracking.runs import root_of

# Libraries whose version can change a model; part of the code version.
LIBRARIES = ("scikit-learn", "numpy", "scipy", "pandas", "pyarrow", "optuna", "skops", "mlflow")
ENVIRONMENT_DIR = "environment"
REPRODUCES_TAG = "mlcycle.reproduces"
# Root-run tags: ``mlcycle.<key>`` for each key of the lineage dict the pipeline builds
# (git_commit, git_dirty, mlcycle_version, config_fingerprint, source_digest), and these
# two, set once ingest has read the data.
DATA_NAME_TAG = "mlcycle.data_name"
DATA_SOURCE_TAG = "mlcycle.data_source"
DATA_DIGEST_TAG = "mlcycle.data_digest"


def lineage_tags(lineage: dict[str, str]) -> dict[str, str]:
    return {f"mlcycle.{k}": v for k, v in lineage.items()}


def git_state(root: Path) -> dict[str, str]:
    """Commit and dirty flag of the checkout at ``root`` ("unknown" outside git)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(bool(status)).lower()}


def fingerprint(obj: Any) -> str:
    """Stable hash of a JSON-serialisable object (a resolved config section, ...)."""
    payload = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


# --------------------------------------------------------------------------- code version
@lru_cache(maxsize=1)
def source_digest() -> str:
    """Hash of mlcycle's own Python source: changes whenever the package's code does,
    committed or not, installed or in a checkout."""
    package = Path(mlcycle.__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(path.relative_to(package).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def code_version(lineage: dict[str, str]) -> dict[str, Any]:
    """The code a stage's outputs depend on; ``lineage`` is the root run's lineage dict."""
    return {
        "mlcycle_version": lineage.get("mlcycle_version", mlcycle.__version__),
        "git_commit": lineage.get("git_commit", "unknown"),
        "source_digest": lineage.get("source_digest") or source_digest(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }


# --------------------------------------------------------------------------- environment
def requirements_text() -> str:
    """Every installed distribution with its exact version, plus the Python version."""
    seen: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata.get("Name")
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    lines = [f"# python {platform.python_version()} ({platform.platform()})", *sorted(seen.values(), key=str.lower)]
    return "\n".join(lines) + "\n"


def log_environment(client: MlflowClient, run_id: str) -> None:
    """conda.yaml (the declared environment) and requirements.txt (the installed one)."""
    try:
        conda = config_dir().parent / "conda.yaml"
    except ConfigError:  # an installed package without its project folder
        conda = None
    if conda is not None and conda.is_file():
        client.log_artifact(run_id, str(conda), ENVIRONMENT_DIR)
    client.log_text(run_id, requirements_text(), f"{ENVIRONMENT_DIR}/requirements.txt")


def parse_requirements(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not name.startswith("#"):
            out[name.lower()] = version
        elif line.startswith("# python "):
            out["python"] = line.removeprefix("# python ").split(" ")[0]
    return out


# --------------------------------------------------------------------------- tracing
@dataclass(frozen=True)
class Lineage:
    """Everything a root run recorded about how it was made."""

    root_run_id: str
    experiment_id: str
    run_name: str
    status: str
    artifact_uri: str
    config: dict[str, Any]
    tags: dict[str, str]
    test_metrics: dict[str, float]
    environment: dict[str, str] = field(default_factory=dict)  # from requirements.txt
    model: str | None = None  # "name/version" when traced from the registry

    @property
    def data_source(self) -> str | None:
        return self.tags.get(DATA_SOURCE_TAG)

    @property
    def data_digest(self) -> str | None:
        return self.tags.get(DATA_DIGEST_TAG)

    @property
    def git_commit(self) -> str:
        return self.tags.get("mlcycle.git_commit", "unknown")

    @property
    def git_dirty(self) -> str:
        return self.tags.get("mlcycle.git_dirty", "unknown")

    @property
    def mlcycle_version(self) -> str:
        return self.tags.get("mlcycle.mlcycle_version", "unknown")

    @property
    def source_digest(self) -> str | None:
        return self.tags.get("mlcycle.source_digest")

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


def resolve_root(client: MlflowClient, target: str) -> tuple[str, str | None]:
    """(root run id, "name/version" or None) for a models:/ URI or a run id."""
    target = target.strip()
    model = None
    if target.startswith("models:/"):
        version = resolve_uri(client, target, LineageError)
        run_id = version.tags.get(TAG_ROOT_RUN) or version.run_id
        if not run_id:
            raise LineageError(f"{target}: the version names no run it came from")
        model = f"{version.name}/{version.version}"
    else:
        run_id = target
    try:
        return root_of(client, run_id).info.run_id, model
    except MlflowException as exc:
        raise LineageError(f"{target}: run {run_id!r} not found ({first_line(exc)})") from None


def trace(client: MlflowClient, target: str) -> Lineage:
    """Follow a model version or run back to its root run and read what it recorded."""
    root_id, model = resolve_root(client, target)
    run = client.get_run(root_id)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            config_file = client.download_artifacts(root_id, "config.yaml", tmp)
        except (MlflowException, OSError) as exc:
            raise LineageError(f"{target}: root run {root_id} has no config.yaml ({first_line(exc)})") from None
        config = yaml.safe_load(Path(config_file).read_text())
        environment: dict[str, str] = {}
        try:
            req = client.download_artifacts(root_id, f"{ENVIRONMENT_DIR}/requirements.txt", tmp)
            environment = parse_requirements(Path(req).read_text())
        except (MlflowException, OSError):
            pass  # runs made before environments were recorded
    metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
    return Lineage(
        root_run_id=root_id,
        experiment_id=run.info.experiment_id,
        run_name=run.info.run_name or "",
        status=run.info.status,
        artifact_uri=run.info.artifact_uri,
        config=config,
        tags=dict(run.data.tags),
        test_metrics=metrics,
        environment=environment,
        model=model,
    )



# --------------------------------------------------------------------------- reproduce
def reproduction_config(original: Lineage, current: Config, experiment_name: str, register: bool) -> Config:
    """The original run's resolved config, pointed at today's store and paths.

    Same config, data source and seed; the step cache is off (everything really runs) and,
    unless ``register``, the model is logged but not registered (no new version, no alias).
    """
    cfg = from_resolved(original.config)
    cfg.paths = current.paths
    cfg.mlflow.tracking_uri = current.mlflow.tracking_uri
    cfg.mlflow.artifact_location = current.mlflow.artifact_location
    cfg.mlflow.experiment_name = experiment_name
    cfg.mlflow.run_name = f"reproduce-{original.run_name}" if original.run_name else None
    cfg.mlflow.tags = {
        **cfg.mlflow.tags,
        REPRODUCES_TAG: original.root_run_id,
        **({"mlcycle.reproduces_model": original.model} if original.model else {}),
    }
    cfg.cache.enabled = False
    cfg.cache.force = []
    cfg.registry.enabled = register
    if cfg.data.source is Source.file and original.data_source:
        cfg.data.path = original.data_source  # the absolute path ingest resolved
    return cfg


@dataclass(frozen=True)
class MetricCheck:
    name: str
    original: float | None
    reproduced: float | None

    @property
    def match(self) -> bool:
        a, b = self.original, self.reproduced
        if a is None or b is None:
            return False
        return a == b or (math.isnan(a) and math.isnan(b))


@dataclass(frozen=True)
class Comparison:
    metrics: list[MetricCheck]
    differences: list[str]  # lineage facts that differ: data digest, code, environment

    @property
    def reproduced(self) -> bool:
        return bool(self.metrics) and all(m.match for m in self.metrics)


def compare(original: Lineage, new: Lineage) -> Comparison:
    """Test metrics metric by metric (exact equality), and what differs in their lineage."""
    names = sorted(set(original.test_metrics) | set(new.test_metrics))
    checks = [MetricCheck(n, original.test_metrics.get(n), new.test_metrics.get(n)) for n in names]
    return Comparison(checks, differences(original, new))


def differences(original: Lineage, new: Lineage) -> list[str]:
    out = []
    if original.data_digest != new.data_digest:
        out.append(
            f"data digest differs: {original.data_digest} (original) vs {new.data_digest} (now); "
            f"the data at {new.data_source or original.data_source} is not what the original run read"
        )
    code = []
    if original.git_commit != new.git_commit:
        code.append(f"git commit {original.git_commit[:12]} (original) vs {new.git_commit[:12]} (now)")
    if original.mlcycle_version != new.mlcycle_version:
        code.append(f"mlcycle {original.mlcycle_version} (original) vs {new.mlcycle_version} (now)")
    if original.source_digest and new.source_digest and original.source_digest != new.source_digest:
        code.append(f"mlcycle source digest {original.source_digest} (original) vs {new.source_digest} (now)")
    if new.git_dirty == "true" and original.git_commit == new.git_commit:
        code.append("same commit, but the git tree has uncommitted changes now")
    if code:
        out.append("code version differs: " + "; ".join(code))
    if original.environment and new.environment:
        keys = ["python", *[name.lower() for name in LIBRARIES]]
        env = [
            f"{k} {original.environment.get(k, 'absent')} (original) vs {new.environment.get(k, 'absent')} (now)"
            for k in keys
            if original.environment.get(k) != new.environment.get(k)
        ]
        if env:
            out.append("environment differs: " + "; ".join(env))
    return out


def describe(lin: Lineage) -> list[str]:
    """Human-readable lines: where a run or version came from."""
    dirty = {"true": "uncommitted changes", "false": "clean"}.get(lin.git_dirty, "git state unknown")
    env = f"python {lin.environment.get('python', '?')}, scikit-learn {lin.environment.get('scikit-learn', '?')}" if lin.environment else "not recorded"
    return [
        f"  root run   {lin.root_run_id} ({lin.run_name}, {lin.status}) in experiment {lin.experiment_id}",
        *([f"  model      models:/{lin.model}"] if lin.model else []),
        f"  config     {lin.artifact_uri}/config.yaml (config fingerprint {lin.tags.get('mlcycle.config_fingerprint', '?')})",
        f"  seed       {lin.seed}",
        f"  data       {lin.data_source}  digest {lin.data_digest}",
        f"  code       mlcycle {lin.mlcycle_version}, git commit {lin.git_commit} ({dirty}), source digest {lin.source_digest or '?'}",
        f"  environment {lin.artifact_uri}/{ENVIRONMENT_DIR}/ ({env})",
    ]


def experiment_name(client: MlflowClient, experiment_id: str) -> str:
    return client.get_experiment(experiment_id).name

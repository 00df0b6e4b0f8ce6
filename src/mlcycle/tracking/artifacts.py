"""Artifacts of the active run (files, JSON/YAML, figures, frames) and dataset inputs.

The functions log to the run made active by ``runs.root_run`` / ``runs.stage_run``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import mlflow

from mlcycle.core.data import digest
from mlcycle.core.tables import file_digest


def log_artifact_files(paths: list[Path], folder: str) -> None:
    """Files as artifacts of the active run, under ``folder``."""
    for path in paths:
        mlflow.log_artifact(str(path), folder)


def download_artifact(run_id: str, path: str, dst: Path) -> Path:
    """One artifact of a run, downloaded into ``dst``."""
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(dst)))


def read_frame(artifact_uri: str):
    """A Parquet artifact (``runs:/<id>/path.parquet`` or any artifact URI) as a DataFrame."""
    import pandas as pd

    with tempfile.TemporaryDirectory() as tmp:
        return pd.read_parquet(mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=tmp))


def log_text(text: str, path: str) -> None:
    """A text artifact (HTML, CSV) on the active run."""
    mlflow.log_text(text, path)


def log_artifact_dict(obj: dict, path: str) -> None:
    """A JSON/YAML artifact on the active run, keys in their order.

    ``mlflow.log_dict`` sorts YAML keys, and order matters in a config: the order of
    ``data.derived_features`` is the column order, a search space's is Optuna's draw order.
    A config.yaml that lost it does not reproduce its run exactly.
    """
    if path.endswith((".yaml", ".yml")):
        import yaml

        mlflow.log_text(yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True), path)
    else:
        mlflow.log_dict(obj, path)


def log_figures(figures: dict, folder: str) -> None:
    """Log matplotlib figures as PNG artifacts on the active run and close them."""
    import matplotlib.pyplot as plt

    for name, fig in figures.items():
        try:
            mlflow.log_figure(fig, f"{folder}/{name}")
        finally:
            plt.close(fig)


def log_frames(frames: dict, folder: str) -> None:
    """Log DataFrames as ``<folder>/<name>.parquet`` artifacts on the active run."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, frame in frames.items():
            frame.to_parquet(Path(tmp) / f"{name}.parquet", index=False)
        mlflow.log_artifacts(tmp, folder)


def log_splits(splits, source: str, target: str, data_name: str) -> None:
    """Log train/validation/test as dataset inputs of the active run, in one call."""
    import mlflow.data
    from mlflow.data.sources import CodeDatasetSource, LocalArtifactDatasetSource

    contexts = {"train": "training", "validation": "validation", "test": "test"}
    src = LocalArtifactDatasetSource(source) if Path(source).is_absolute() else CodeDatasetSource(tags={"mlflow.source.name": source})
    with warnings.catch_warnings():
        # integer targets (0/1 labels) are never missing: MLflow's schema hint does not apply
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        datasets = [
            mlflow.data.from_pandas(part, source=src, targets=target, name=f"{data_name}-{name}", digest=digest(part))
            for name, part in splits.items()
        ]
        mlflow.log_inputs(datasets=datasets, contexts=[contexts[n] for n, _ in splits.items()], tags_list=[None] * len(datasets))


def log_input_file(frame, path: Path, context: str) -> None:
    """Log a file the active run read (e.g. a batch to score) as a dataset input. Without a
    frame (the Spark engine never holds the file): its name, source and content hash only."""
    import mlflow.data
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.data.sources import LocalArtifactDatasetSource

    source = LocalArtifactDatasetSource(str(path))
    if frame is None:
        mlflow.log_input(MetaDataset(source, name=path.name, digest=file_digest(path)), context=context)
        return
    with warnings.catch_warnings():
        # integer columns in a file to score: MLflow's schema hint is about model signatures
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        dataset = mlflow.data.from_pandas(frame, source=source, name=path.name, digest=digest(frame))
        mlflow.log_input(dataset, context=context)

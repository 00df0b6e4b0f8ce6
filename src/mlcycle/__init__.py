"""mlcycle: a reproducible, MLflow-native ML pipeline for tabular data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlcycle")
except PackageNotFoundError:  # running from a source tree without installation (mlflow run + uv)
    __version__ = "0.1.0+source"

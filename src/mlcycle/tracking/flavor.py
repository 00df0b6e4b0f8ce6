"""The python_function flavor of an mlcycle model: how it is stored, what may be loaded from
it, and what ``mlflow.pyfunc.load_model``, ``mlflow models serve`` and ``spark_udf`` run.

An mlcycle model directory holds ``data/model.skops`` (the fitted Pipeline, skops: no
pickle) and ``data/contract.json`` (the input contract: each column's name and the type it
had in the training data, the task, the target and the classes). MLflow calls
``_load_pyfunc(data_dir)``; the ``ServedModel`` it returns checks every request against the
contract with the same code as ``mlcycle predict`` (``core.scoring.check_input``):

* every column the model needs must be there (one message lists those missing);
* integer columns take integers, decimals and missing values alike, dates come as text or
  as datetimes (MLflow's own column types refuse those real rows, so the MLflow signature
  declares outputs and params only; ``model_io.signature_for`` says why);
* a value that does not fit its column (``"abc"`` in a numeric column) refuses the request
  (HTTP 400) with one message naming the row and the column, never the request's values;
* missing values are accepted (the Pipeline imputes them); columns the model does not use
  are ignored;
* ``params={"output": "probabilities"}`` returns ``prediction`` plus one
  ``probability_<class>`` column per class for a classifier; the default is the labels.

``load_skops`` rebuilds a Pipeline trusting ``TRUSTED_TYPES`` and nothing else (never the
list a model's files declare): the one allowlist for every load.

This module is named in every logged model's MLmodel (``loader_module``): keep the name.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from mlcycle.core.scoring import InputColumn, check_input, describe_rejections, prediction_frame
from mlcycle.errors import DataError

# Types (beyond skops' defaults) that a model Pipeline may contain. Adding an estimator or a
# transformer with new internals means adding its types here, on purpose.
TRUSTED_TYPES = sorted(
    {
        "mlcycle.core.cleaning.TabularCleaner",
        "mlcycle.core.features.DateParts",
        "mlcycle.core.features.DerivedFeatures",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        # the Pipeline's model step when it carries a decision threshold (core/threshold.py);
        # skops trusts it by default today: named so it stays trusted whatever skops decides
        "sklearn.model_selection._classification_threshold.FixedThresholdClassifier",
        "sklearn.model_selection._split.KFold",  # TargetEncoder's cross-fitting splitter
        "sklearn.model_selection._split.StratifiedKFold",
        "sklearn.tree._tree.Tree",
        # model=auto's ensemble (core.modeling.build_model): the soft vote, skops-trusted by
        # default today (named so they stay trusted), and its fitted members by name (a Bunch:
        # a dict with attribute access, not trusted by default)
        "sklearn.ensemble._voting.VotingClassifier",
        "sklearn.ensemble._voting.VotingRegressor",
        "sklearn.utils._bunch.Bunch",
        # models saved before mlcycle's transformers moved to mlcycle.core name the old modules
        "mlcycle.cleaning.TabularCleaner",
        "mlcycle.features.DateParts",
        "mlcycle.features.DerivedFeatures",
    }
)
# old module -> where its classes live now (skops imports a saved type's module by name)
MOVED_MODULES = {"mlcycle.cleaning": "mlcycle.core.cleaning", "mlcycle.features": "mlcycle.core.features"}

DATA_DIR = "pipeline"  # under the model's data/: model.skops and contract.json
MODEL_FILE = "model.skops"
CONTRACT_FILE = "contract.json"
OUTPUT_PARAM = "output"  # labels | probabilities
LABELS, PROBABILITIES = "labels", "probabilities"


def untrusted_types(model) -> list[str]:
    """Types skops would refuse to load from this model without being told to trust them."""
    import skops.io

    return sorted(skops.io.get_untrusted_types(data=skops.io.dumps(model)))


def load_skops(payload: bytes) -> object:
    """A skops payload, trusting ``TRUSTED_TYPES`` and nothing else (raises otherwise)."""
    import skops.io

    for old, new in MOVED_MODULES.items():
        sys.modules.setdefault(old, importlib.import_module(new))
    return skops.io.loads(payload, trusted=TRUSTED_TYPES)


def contract_of(schema) -> dict[str, Any]:
    """The input contract of a model trained with ``schema`` (``core.data.Schema``)."""
    return {
        "format": 1,
        "task": schema.task.value,
        "target": schema.target,
        "classes": [c.item() if isinstance(c, np.generic) else c for c in schema.classes],
        "inputs": [{"name": c, "type": schema.type_of(c), "kind": schema.kind_of(c)} for c in schema.features],
    }


def input_columns(contract: dict) -> list[InputColumn]:
    return [InputColumn(c["name"], c["type"], True) for c in contract["inputs"]]


class Refused(MlflowException):
    """A request the contract refuses: INVALID_PARAMETER_VALUE (HTTP 400), with a message that
    stays as written. The scoring server prefixes an MlflowException's message with the whole
    request ("Failed to predict data '<rows>'"), which would echo the data back."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self.__dict__.get("_message", "")

    @message.setter
    def message(self, value: str) -> None:
        self.__dict__.setdefault("_message", value)  # the first message stays


class ServedModel:
    """The Pipeline behind the contract's checks (see the module docstring)."""

    def __init__(self, pipeline: Any, contract: dict[str, Any]):
        self.pipeline = pipeline
        self.contract = contract
        self.columns = input_columns(contract)

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        output = (params or {}).get(OUTPUT_PARAM) or LABELS
        if output not in (LABELS, PROBABILITIES):
            raise Refused(f"params.{OUTPUT_PARAM} must be {LABELS} or {PROBABILITIES}, got {output!r}")
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            checked = check_input(frame, self.columns, "request")
        except DataError as exc:
            raise Refused(str(exc)) from None
        if len(checked.rejected):
            raise Refused(
                f"{checked.rejected['row'].nunique()} row(s) with a value that does not fit its column: "
                f"{describe_rejections(checked.rejected, show_values=False)}"
            )
        if output == LABELS:
            return self.pipeline.predict(checked.frame)
        if not hasattr(self.pipeline, "predict_proba"):
            raise Refused(f"a {self.contract['task']} model gives no probabilities")
        return prediction_frame(self.pipeline.predict(checked.frame), self.pipeline.predict_proba(checked.frame),
                                self.pipeline.classes_)


def save_model(path: str, mlflow_model, *, pipeline: Any, contract: dict[str, Any], **kwargs: Any) -> None:
    """Write an mlcycle model into ``path`` (``mlflow.models.Model.log`` calls it with
    ``flavor=`` this module): ``data/pipeline/{model.skops,contract.json}``, the
    python_function flavor with this module as its loader, and the sklearn flavor over the
    same skops file (for ``mlflow.sklearn.load_model``, trusting ``TRUSTED_TYPES``).
    ``kwargs`` go to ``mlflow.pyfunc.save_model`` (code_paths, signature, requirements, ...)."""
    import tempfile

    import mlflow.pyfunc
    import sklearn
    import skops.io

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / DATA_DIR
        data.mkdir()
        (data / MODEL_FILE).write_bytes(skops.io.dumps(pipeline))
        (data / CONTRACT_FILE).write_text(json.dumps(contract, indent=1))
        mlflow_model.add_flavor(
            "sklearn", pickled_model=f"data/{DATA_DIR}/{MODEL_FILE}", sklearn_version=sklearn.__version__,
            serialization_format="skops", skops_trusted_types=TRUSTED_TYPES, code="code",
        )
        mlflow.pyfunc.save_model(path, loader_module=__name__, data_path=str(data), mlflow_model=mlflow_model, **kwargs)


def _load_pyfunc(data_path: str) -> ServedModel:
    """MLflow's entry point (``loader_module``): the model in ``data_path``, loaded through
    mlcycle's skops allowlist."""
    folder = Path(data_path)
    contract = json.loads((folder / CONTRACT_FILE).read_text())
    return ServedModel(load_skops((folder / MODEL_FILE).read_bytes()), contract)

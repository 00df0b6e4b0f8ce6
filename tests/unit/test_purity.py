"""Pure domain modules never import mlflow or hydra (architecture contract)."""

from __future__ import annotations

import subprocess
import sys

PURE = [
    "mlcycle.data", "mlcycle.cleaning", "mlcycle.features", "mlcycle.modeling", "mlcycle.evaluation",
    "mlcycle.tuning", "mlcycle.drift", "mlcycle.gate", "mlcycle.scoring", "mlcycle.masking",
    "mlcycle.liveness", "mlcycle.datasets",
]


def test_pure_modules_import_neither_mlflow_nor_hydra():
    code = (
        "import sys\n"
        f"for name in {PURE!r}: __import__(name)\n"
        "print(sorted(m for m in ('mlflow', 'hydra', 'omegaconf') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

"""The layout is the architecture (docs/architecture.md), and these tests keep it so:

* pure code (``core/``, the config schemas) imports neither mlflow nor hydra;
* MLflow is imported only where the layout says: ``tracking/`` (and the readers of the
  run tree: ``monitoring/``, ``report/``); stages, the pipeline and the commands go
  through ``tracking``;
* no two modules import each other, directly or around a cycle (imports inside functions
  count; ``if TYPE_CHECKING:`` imports do not);
* no source module is longer than the size a reader can hold (~400 lines).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "mlcycle"
MLFLOW_ALLOWED = ("mlcycle.tracking", "mlcycle.monitoring", "mlcycle.report")
MAX_LINES = 400


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(path: Path) -> list[str]:
    """Every module a file imports at run time (module level or inside functions)."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for child in node.body for n in ast.walk(child)}
    found = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names]  # `from pkg import module`
    return found


def test_pure_modules_import_neither_mlflow_nor_hydra():
    pure = [m for m in modules() if m.startswith("mlcycle.core")] + ["mlcycle.config.schema", "mlcycle.config.rules", "mlcycle.config.paths", "mlcycle.config.monitor"]
    code = (
        "import sys\n"
        f"for name in {pure!r}: __import__(name)\n"
        "print(sorted(m for m in ('mlflow', 'hydra', 'omegaconf') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_mlflow_is_imported_only_by_the_tracking_layer():
    offenders = {
        name: [i for i in imports_of(path) if i == "mlflow" or i.startswith("mlflow.")]
        for name, path in modules().items()
        if not name.startswith(MLFLOW_ALLOWED)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_cycles():
    known = modules()
    graph = {name: {i for i in imports_of(path) if i in known and i != name} for name, path in known.items()}
    # a package's __init__ re-exporting its modules is not a cycle with them
    graph = {name: {d for d in deps if not (d.startswith(name + ".") and known[name].name == "__init__.py")}
             for name, deps in graph.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [node, dep])
            elif dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_source_module_is_too_long_to_read():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}

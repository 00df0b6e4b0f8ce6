"""The README's command blocks, run as written, so the README cannot drift from mlcycle.

Every ```bash block in README.md is preceded by a marker saying how it is tested:

* ``<!-- readme-test: quickstart -->``: `make run` (its `make test` line is this suite);
* ``<!-- readme-test: run [exit=0,3] -->``: run here after the quickstart, in README order;
* ``<!-- readme-test: slow -->``: run here too, after the others (they take minutes);
* ``<!-- readme-test: server (where it is tested) -->``: starts a server that blocks; the
  named test runs it (the UI in Chromium, the scoring server with its curl example);
* ``<!-- readme-test: elsewhere (where) -->``: run by the named tests or tools;
* ``<!-- tested: ... -->``: a block another test extracts and runs itself.

The blocks run in a fresh copy of the project (its tracked files; the project's .venv
linked in), one command line at a time with ``bash``, ``.venv/bin`` first on the PATH (the
README says to activate it), no tracking URI from the environment, and ``MLCYCLE_ROOT``
pointing at the copy: the linked .venv's editable install would otherwise take the
original checkout as the project folder. A line fails the test when its exit code is not 0
(or one the marker allows).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.conftest import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
MARKER = re.compile(r"<!-- (readme-test|tested): ?([^>]*?) ?-->\s*$")
KINDS = ("quickstart", "run", "slow", "server", "elsewhere")


@dataclass(frozen=True)
class Block:
    line: int  # where the block starts in README.md (1-based)
    kind: str
    exits: frozenset[int]
    commands: tuple[str, ...]


def blocks(text: str) -> list[Block]:
    """Every ```bash block with its marker (kind ``unmarked`` when the line above has none)."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```bash":
            start, body = i, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            marker = MARKER.match(lines[start - 1].strip()) if start else None
            kind, exits = "unmarked", frozenset({0})
            if marker and marker.group(1) == "tested":
                kind = "tested"
            elif marker:
                words = marker.group(2).split("(")[0].split()
                kind = words[0] if words else "unmarked"
                for word in words[1:]:
                    if word.startswith("exit="):
                        exits = frozenset(int(code) for code in word[5:].split(","))
            found.append(Block(start + 1, kind, exits, tuple(commands(body))))
        i += 1
    return found


def commands(body: list[str]) -> list[str]:
    """Command lines (a trailing backslash joins lines); comment-only lines dropped."""
    out, current = [], ""
    for line in body:
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip() and not current.lstrip().startswith("#"):
            out.append(current.strip())
        current = ""
    return out


def test_every_command_block_says_how_it_is_tested():
    found = blocks(README.read_text())
    assert found, "README.md has no ```bash blocks"
    bad = [f"README.md:{b.line}: {b.kind}" for b in found if b.kind not in (*KINDS, "tested")]
    text = README.read_text().splitlines()
    bad += [f"README.md:{b.line}: {b.kind} without (where it is tested)" for b in found
            if b.kind in ("server", "elsewhere") and "(" not in text[b.line - 2]]
    assert not bad, "each ```bash block needs a <!-- readme-test: ... --> marker above it: " + "; ".join(bad)
    assert [b.kind for b in found].count("quickstart") == 1
    (quick,) = [b for b in found if b.kind == "quickstart"]
    assert [c.split("#")[0].strip() for c in quick.commands] == ["make run", "make test"]


def test_the_marker_parser_reads_exit_codes_and_joined_lines():
    text = "x\n<!-- readme-test: run exit=0,10,11 -->\n```bash\nmlcycle a \\\n  b   # note\n# only a comment\n```\n"
    (block,) = blocks(text)
    assert (block.kind, block.exits, block.line) == ("run", frozenset({0, 10, 11}), 3)
    assert block.commands == ("mlcycle a    b   # note",)
    assert blocks("```bash\nls\n```\n")[0].kind == "unmarked"


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory) -> Path:
    """The project's tracked files as they are in the working tree, with .venv linked."""
    copy = tmp_path_factory.mktemp("readme") / "mlcycle"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy / ".venv").symlink_to(PROJECT_ROOT / ".venv")
    return copy


def run_block(block: Block, folder: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLCYCLE_"))}
    env.update(PATH=f"{folder / '.venv' / 'bin'}{os.pathsep}{env['PATH']}", MLCYCLE_ROOT=str(folder),
               VIRTUAL_ENV=str(folder / ".venv"))
    done = []
    for command in block.commands:
        if block.kind == "quickstart" and command.startswith("make test"):
            continue  # this suite is `make test`
        proc = subprocess.run(["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=1500)
        assert proc.returncode in block.exits, (
            f"README.md:{block.line}: `{command}` exited {proc.returncode}\n"
            f"{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}")
        done.append(proc.stdout + proc.stderr)
    return done


def root_runs(folder: Path) -> list:
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, "tags.`mlcycle.run_kind` = 'pipeline'")


@pytest.mark.slow
def test_the_readme_runs_as_written_after_make_run(fresh_copy):
    found = blocks(README.read_text())
    outputs = []
    for block in [b for b in found if b.kind == "quickstart"] + [b for b in found if b.kind == "run"]:
        outputs += run_block(block, fresh_copy)

    # what the quickstart promises, in its own folder: a run registered as champion
    assert (fresh_copy / "mlflow.db").is_file() and (fresh_copy / "mlartifacts").is_dir()
    assert "registered mlcycle-ecommerce version 1 (challenger, champion)" in outputs[0]
    assert "workflowType=machine_learning" in outputs[0]
    # the blocks did what they say: the user's own data trained, a file scored, monitoring runs
    own = [r for r in root_runs(fresh_copy) if r.data.params.get("data.name") == "csv"]
    assert own and all(r.info.status == "FINISHED" for r in own)
    assert MlflowClient(f"sqlite:///{fresh_copy / 'mlflow.db'}").get_registered_model("mlcycle-csv")
    scored = pd.read_parquet(fresh_copy / "scored.parquet")
    assert len(scored) == 3000 and "prediction" in scored.columns
    client = MlflowClient(f"sqlite:///{fresh_copy / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    monitors = client.search_runs(experiments, "tags.`mlcycle.run_kind` = 'monitor'")
    assert len(monitors) == 3 and all(r.info.status == "FINISHED" for r in monitors)
    assert client.search_runs(experiments, "attributes.status = 'RUNNING'") == []


@pytest.mark.slow
def test_the_readme_slow_blocks_run_as_written(fresh_copy):
    for block in [b for b in blocks(README.read_text()) if b.kind == "slow"]:
        run_block(block, fresh_copy)
    client = MlflowClient(f"sqlite:///{fresh_copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("mlcycle")
    roots = client.search_runs([experiment.experiment_id], "tags.`mlcycle.run_kind` = 'pipeline'")
    assert {"random_forest", "logistic_regression"} <= {r.data.params.get("model.name") for r in roots}
    assert client.get_experiment_by_name("Default") is None or not client.search_runs(
        [client.get_experiment_by_name("Default").experiment_id])

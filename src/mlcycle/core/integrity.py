"""Manifests: the sha256 of every file under a folder, and what changed since. Pure.

mlcycle records a model's manifest in the tracking database when it registers the version
(and a step-cache output's when it stores it), never in the artifact store it protects: who
can write the artifacts cannot write the manifest. Loading compares the downloaded files
with it before reading any of them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# Written by MLflow into a folder it downloads a registered model to; not part of the model.
DOWNLOAD_BOOKKEEPING = frozenset({"registered_model_meta"})


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def manifest_of(folder: Path) -> dict[str, str]:
    """Relative path (POSIX) -> sha256, for every file under ``folder``."""
    return {
        path.relative_to(folder).as_posix(): sha256_of(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() not in DOWNLOAD_BOOKKEEPING
    }


def to_text(manifest: dict[str, str]) -> str:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"))


def from_text(text: str) -> dict[str, str]:
    return json.loads(text)


def differences(folder: Path, manifest: dict[str, str]) -> list[str]:
    """What differs between ``folder`` and ``manifest``: "changed <path>", "added <path>",
    "missing <path>", sorted; empty when they match."""
    actual = manifest_of(folder)
    out = [f"changed {p}" for p in sorted(set(actual) & set(manifest)) if actual[p] != manifest[p]]
    out += [f"added {p}" for p in sorted(set(actual) - set(manifest))]
    out += [f"missing {p}" for p in sorted(set(manifest) - set(actual))]
    return out

"""User paths: config values that name a file or a store relative to where the command started.

``data.path=my.csv`` or ``mlflow.tracking_uri=sqlite:///my.db`` means "in the directory I ran
the command from", whatever happens later: ``hydra.job.chdir=true`` moves the process into
Hydra's run directory before the pipeline runs. So the schemas mark such fields
(``user_path``, ``user_uri``) and ``anchor`` makes them absolute against the start directory,
once, when the typed config is built (``config.load.typed``). Project paths (``paths.root``
and what derives from it) are absolute already.

Pure: the standard library only.
"""

from __future__ import annotations

import re
from dataclasses import field, fields, is_dataclass
from pathlib import Path
from typing import Any

ANCHOR = "mlcycle.anchor"  # field metadata: "path" or "uri"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def user_path(default: str | None = None) -> Any:
    """A field holding a file path, relative to the start directory unless absolute."""
    return field(default=default, metadata={ANCHOR: "path"})


def user_uri(default: str | None = None) -> Any:
    """A field holding a store URI: a relative sqlite file or a plain path is anchored;
    other URIs (``http://``, ``postgresql://``, ``s3://``) are left as they are."""
    return field(default=default, metadata={ANCHOR: "uri"})


def absolute_path(path: str, base: Path) -> str:
    """``path`` (``~`` expanded) made absolute against ``base``."""
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def absolute_uri(uri: str, base: Path) -> str:
    """A relative ``sqlite:///file.db`` or a plain relative path, made absolute against ``base``."""
    if uri.startswith("sqlite:///"):
        rest = uri.removeprefix("sqlite:///")
        file, query, params = rest.partition("?")
        if file and file != ":memory:" and not file.startswith("/"):
            return f"sqlite:///{absolute_path(file, base)}{query}{params}"
        return uri
    if uri and not _SCHEME.match(uri):
        return absolute_path(uri, base)
    return uri


def anchor(obj: Any, base: Path) -> Any:
    """Every ``user_path``/``user_uri`` field of a typed config (nested dataclasses
    included) made absolute against ``base``, in place; returns ``obj``."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        kind = f.metadata.get(ANCHOR)
        if is_dataclass(value):
            anchor(value, base)
        elif kind and isinstance(value, str) and value:
            setattr(obj, f.name, absolute_path(value, base) if kind == "path" else absolute_uri(value, base))
    return obj

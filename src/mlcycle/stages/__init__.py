"""The pipeline's stages: one module each, defining ``STAGE`` (see ``base.Stage``).

Their order is ``config.schema.STAGES``; adding a stage is a module here and its name in
that list (docs/architecture.md walks through it).
"""

from __future__ import annotations

import importlib

from mlcycle.stages.base import Stage


def get(name: str) -> Stage:
    """The stage called ``name`` (``mlcycle.stages.<name>.STAGE``)."""
    return importlib.import_module(f"{__name__}.{name}").STAGE

"""Declared validation for the config schemas: a rule per field, checked in ``__post_init__``.

``Checked`` is the base of every schema with rules. A schema lists ``RULES`` (field ->
``Rule``) and may override ``check`` for rules over several fields; a broken rule raises
``ConfigError`` with one line naming the key and the value.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from mlcycle.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """A condition on one field's value, and how to say it: "<key> must be <says>"."""

    holds: Callable[[Any], bool]
    says: str

    def message(self, key: str, value: Any) -> str:
        return f"{key} must be {self.says}, got {_show(value)}"


@dataclass(frozen=True)
class Among(Rule):
    """A name, or every item of a list (every key of a dict), is one of the known names."""

    names: tuple[str, ...] = ()

    def message(self, key: str, value: Any) -> str:
        unknown = [v for v in _items(value) if v not in self.names]
        return f"{key}: unknown {self.says}(s) {unknown}; known: {list(self.names)}"


def _items(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple | dict) else [value]


def among(names: tuple[str, ...], what: str) -> Rule:
    return Among(lambda value: all(v in names for v in _items(value)), what, tuple(names))


def at_least(n: float) -> Rule:
    return Rule(lambda v: v >= n, f"at least {n}")


def positive() -> Rule:
    return Rule(lambda v: v > 0, "positive")


def between(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Rule:
    def holds(v: float) -> bool:
        return (low < v if low_open else low <= v) and (v < high if high_open else v <= high)

    return Rule(holds, f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")


def or_null(rule: Rule) -> Rule:
    return Rule(lambda v: v is None or rule.holds(v), f"{rule.says} or null")


KEY_VALUES = Rule(lambda items: all("=" in str(v) for v in items), "key=value items")


def _model_name(name: Any) -> bool:
    """MLflow's rule for a registered model name (``mlflow.utils.validation._validate_model_name``):
    not blank, no '/' or ':', and not a path that normalizes to another name."""
    if not isinstance(name, str) or not name.strip() or "/" in name or ":" in name:
        return False
    norm = posixpath.normpath(name)
    return norm == name and norm != "." and not norm.startswith("..")


def _alias(name: Any) -> bool:
    """MLflow's rule for an alias a version can be given: letters, digits, '_' and '-', at
    most 255, neither ``latest`` nor a version alias like ``v3`` (reserved)."""
    return (isinstance(name, str) and re.fullmatch(r"[\w\-]{1,255}", name) is not None
            and name.lower() != "latest" and re.fullmatch(r"[vV]\d+", name) is None)


# The metrics core/evaluation.py computes: the names evaluate and the gate accept.
CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "log_loss", "brier")
REGRESSION_METRICS = ("rmse", "mae", "r2")
METRICS = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS)
METRIC = among(METRICS, "metric")
MODEL_NAME = Rule(_model_name, "a registered model name (not blank, no '/' or ':', not '.' or '..' at the start)")
ALIAS = Rule(_alias, "an alias of letters, digits, '_' and '-' (not 'latest' or 'v<number>')")


def placeholder(value: Any) -> bool:
    """An unresolved default: OmegaConf builds the schemas once with ``???`` and ``${...}``."""
    return isinstance(value, str) and (value == "???" or value.startswith("${"))


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


class Checked:
    """Base of the schemas with rules: ``__post_init__`` applies ``RULES``, then ``check``."""

    KEY: ClassVar[str] = ""  # where the group sits in the config, for messages
    RULES: ClassVar[dict[str, Rule]] = {}

    def __post_init__(self) -> None:
        for name, rule in self.RULES.items():
            value = getattr(self, name)
            if not placeholder(value) and not rule.holds(value):
                raise ConfigError(rule.message(f"{self.KEY}.{name}" if self.KEY else name, value))
        self.check()

    def check(self) -> None:
        """Rules over several fields (override); ``require`` raises ConfigError with one line."""

    @staticmethod
    def require(condition: bool, message: str) -> None:
        if not condition:
            raise ConfigError(message)

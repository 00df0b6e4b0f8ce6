"""Composing the config: Hydra's compose, the typed view, and a config rebuilt from a run.

* ``compose``: the project's config with overrides, as typed dataclasses (one composition
  per command; ``mlcycle train`` lets ``hydra.main`` compose, and ``typed`` converts it);
* ``config_errors``: Hydra's and OmegaConf's multi-line errors as one ``ConfigError`` line;
* ``from_resolved``: a typed Config from a run's ``config.yaml`` (reproduce, retrain);
* ``flatten`` and ``as_dict``: views of a typed config for MLflow params, YAML and hashes.

Hydra and OmegaConf are imported inside the functions: importing this module is cheap, and
nothing runs at import (``register_configs`` is called by the functions that need it).
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from mlcycle.config.monitor import MonitorAppConfig, MonitorConfig
from mlcycle.config.paths import absolute_uri, anchor
from mlcycle.config.schema import SEARCH_OVER_FAMILIES, Config, DataConfig, ModelConfig
from mlcycle.errors import ConfigError, MlcycleError, first_line

# config name -> the schema its composition must produce
SCHEMAS: dict[str, type] = {"config": Config, "monitor": MonitorAppConfig}


def project_root() -> Path:
    """Where the default tracking store and data live, whatever the working directory.

    ``MLCYCLE_ROOT`` wins; otherwise the source checkout this package runs from (it holds
    ``MLproject``); otherwise the working directory.
    """
    if env := os.environ.get("MLCYCLE_ROOT"):
        return Path(env).expanduser().resolve()
    return source_checkout() or Path.cwd().resolve()


def source_checkout() -> Path | None:
    """The project checkout this package runs from (it holds ``MLproject`` and the
    Makefile), or None for an installed package."""
    checkout = Path(__file__).resolve().parents[3]
    return checkout if (checkout / "MLproject").is_file() else None


def config_dir() -> Path:
    """The ``conf/`` folder of the project."""
    conf = Path(__file__).resolve().parents[3] / "conf"
    if not conf.is_dir():
        raise ConfigError(f"configuration folder not found: {conf}")
    return conf


_registered = False


def register_configs() -> None:
    """Register the schemas and the ``mlcycle_root`` resolver (idempotent)."""
    global _registered
    if _registered:
        return
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("mlcycle_root", lambda: str(project_root()), replace=True)
    OmegaConf.register_new_resolver(SECRET_RESOLVER, _stashed, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
    cs.store(group="data", name="base_data", node=DataConfig)
    cs.store(group="model", name="base_model", node=ModelConfig)
    cs.store(name="base_monitor_app", node=MonitorAppConfig)
    cs.store(group="monitor", name="base_monitor", node=MonitorConfig)
    _registered = True


# Secrets taken out of Hydra's overrides, by index; the config refers to them as
# ${mlcycle_secret:N}. They live only in this process's memory.
SECRET_RESOLVER = "mlcycle_secret"
_secrets: list[str] = []


def stash_secrets(override: str) -> str:
    """The override with each secret (``core.masking.override_secret_spans``) replaced by a
    reference this process resolves (``${mlcycle_secret:N}``): what Hydra writes of it, and
    logs, then holds no secret, while the composed config still resolves to the real value."""
    from mlcycle.core.masking import override_secret_spans

    out, last = [], 0
    for start, end in override_secret_spans(override):
        _secrets.append(override[start:end])
        out += [override[last:start], f"${{{SECRET_RESOLVER}:{len(_secrets) - 1}}}"]
        last = end
    return "".join([*out, override[last:]])


def _stashed(index: int) -> str:
    try:
        return _secrets[int(index)]
    except (IndexError, ValueError):
        raise ConfigError(f"${{{SECRET_RESOLVER}:{index}}}: no such secret in this process") from None


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
    """Hydra's and OmegaConf's errors (bad override, unknown key, wrong type) as one
    ``ConfigError`` line; mlcycle's own errors pass unchanged."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        yield
    except MlcycleError:
        raise
    except (HydraException, OmegaConfBaseException) as exc:
        message = one_line(exc)
        if re.search(r"'model\.(classifier|regressor)\.(params|search_space|start)\.", message):
            message += f" ({SEARCH_OVER_FAMILIES})"
        raise ConfigError(message) from None


def compose(overrides: list[str] | tuple[str, ...] = (), config_name: str = "config") -> Any:
    """The project's typed config (``config``, or ``monitor``) with these overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register_configs()
    with config_errors(), initialize_config_dir(str(config_dir()), version_base="1.3", job_name="mlcycle"):
        return typed(hydra_compose(config_name, overrides=list(overrides)), config_name)


def typed(cfg: Any, config_name: str = "config", start: Path | None = None) -> Any:
    """Resolve an OmegaConf config into the plain dataclasses (which check their rules),
    user paths made absolute against ``start``, the directory the command was started in
    (default: the working directory)."""
    from omegaconf import OmegaConf

    refuse_unknown_keys(cfg)
    with config_errors():
        obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, SCHEMAS[config_name]), type(obj)
    return anchor(obj, start or Path.cwd())


def refuse_unknown_keys(cfg: Any, prefix: str = "") -> None:
    """A key the schema does not have raises ConfigError naming the nearest known one.

    ``+typo=1`` adds a key even where the schema is closed, and the conversion to the
    dataclasses would drop it without a word. Open dicts (``model.*.params``, search spaces,
    tags) take any key: their values are checked where they are used.
    """
    from omegaconf import DictConfig, OmegaConf

    schema = OmegaConf.get_type(cfg)
    if not is_dataclass(schema):
        for key, value in cfg.items_ex(resolve=False):  # a dict of schemas (model.families)
            if isinstance(value, DictConfig) and is_dataclass(OmegaConf.get_type(value)):
                refuse_unknown_keys(value, f"{prefix}{key}.")
        return
    known = [f.name for f in fields(schema)]
    for key, value in cfg.items_ex(resolve=False):
        name = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            where = f" in {prefix[:-1]}" if prefix else ""
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f"; known keys{where}: {', '.join(known)}"
            raise ConfigError(f"unknown config key '{name}'{hint}")
        if isinstance(value, DictConfig):
            refuse_unknown_keys(value, f"{name}.")


@contextlib.contextmanager
def pinned_environment() -> Iterator[Path]:
    """For a command that may change directory (``hydra.job.chdir=true``): yields the start
    directory, with ``MLCYCLE_ROOT`` and a relative sqlite ``MLFLOW_TRACKING_URI`` made
    absolute against it until the command ends (child processes inherit them)."""
    start = Path.cwd()
    pinned = {"MLCYCLE_ROOT": str(project_root())}
    if uri := os.environ.get("MLFLOW_TRACKING_URI"):
        pinned["MLFLOW_TRACKING_URI"] = absolute_uri(uri, start)
    saved = {name: os.environ.get(name) for name in pinned}
    os.environ.update(pinned)
    try:
        yield start
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def from_resolved(resolved: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """A typed Config from a resolved config dict (a run's ``config.yaml``), with optional
    ``key=value`` overrides on top (e.g. a retrain's).

    Keys this version of mlcycle does not know, or values of the wrong type, raise
    ConfigError; keys the dict lacks (added since) take their defaults.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    model = resolved.get("model")
    if isinstance(model, dict) and "threshold" not in model:
        # written before model.threshold existed: those models labelled at the estimator's own rule
        resolved = {**resolved, "model": {**model, "threshold": {"objective": "none"}}}
    try:
        merged = OmegaConf.merge(
            OmegaConf.structured(Config), OmegaConf.create(resolved), OmegaConf.from_dotlist(list(overrides or []))
        )
        obj = OmegaConf.to_object(merged)  # the schemas' rules raise ConfigError themselves
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config does not fit this version of mlcycle: {first_line(exc)}") from None
    assert isinstance(obj, Config)
    return obj


def one_line(exc: BaseException) -> str:
    """Hydra's multi-line composition errors, condensed to one line."""
    text = str(exc)
    if "Available options in" in text:  # an unknown group option: list the valid ones
        head, _, tail = text.partition("Available options in")
        options = []
        for line in tail.splitlines()[1:]:
            if not line.startswith("\t"):
                break  # the indented option list has ended
            if not line.strip().startswith("base_"):  # schemas, not user options
                options.append(line.strip())
        return f"{head.strip().splitlines()[0]}; available: {', '.join(options)}"
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 3:
        first = first_line(current)
        if first not in parts:
            parts.append(first)
        current = current.__cause__
    return ": ".join(parts)



# --------------------------------------------------------------------------- views
def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """A typed config as ``{"a.b.c": "value"}`` for MLflow params."""
    if is_dataclass(obj):
        items = [(f.name, getattr(obj, f.name)) for f in fields(obj)]
    elif isinstance(obj, dict):
        items = list(obj.items())
    else:
        return {prefix: _text(obj)}
    out: dict[str, str] = {}
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        if is_dataclass(value) or (isinstance(value, dict) and value):
            out.update(flatten(value, name))
        else:
            out[name] = _text(value)
    return out


def _text(value: Any) -> str:
    return str(value.value if isinstance(value, Enum) else value)


def from_plain(cls: type, raw: dict[str, Any]) -> Any:
    """A schema dataclass from plain values (a JSON round trip of ``as_dict``): Enum fields
    from their values; keys the schema does not have are ignored, missing ones take defaults."""
    values = {}
    for f in fields(cls):
        if f.name in raw:
            value, default = raw[f.name], f.default
            values[f.name] = type(default)(value) if isinstance(default, Enum) and value is not None else value
    return cls(**values)


def as_dict(cfg: Any) -> dict[str, Any]:
    """A typed config (or one group) as plain Python containers: for YAML artifacts and hashes."""

    def convert(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    return convert(asdict(cfg))

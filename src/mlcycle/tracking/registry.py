"""The model registry: register a logged model, move aliases through the gate, audit.

(Logging and loading the model itself: ``model_io``.)

* Every alias move (``move_alias``) happens under the registry lock (``locks.py``), re-reads
  the alias after setting it, and leaves an audit entry on the registered model.
* ``promote`` is the compare-and-set: under the lock, read the champion, re-score it on the
  candidate's test set, run the gate (``gate.py``), and move ``champion`` only if it passes.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import secrets
import threading
from dataclasses import dataclass, field

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlcycle.config.registry import ChampionError, GateConfig, LockConfig
from mlcycle.config.schema import Task
from mlcycle.core import gate as gate_mod
from mlcycle.errors import MlcycleError, first_line
from mlcycle.tracking.locks import registry_lock
from mlcycle.tracking.model_io import load_model, score

# Tags mlcycle writes. On a version: the gate's verdict and numbers, and (on a champion) the
# version it replaced. On the registered model: one audit entry per alias move.
TAG_GATE = "mlcycle.gate"  # passed | failed | forced | disabled
TAG_GATE_SUMMARY = "mlcycle.gate.summary"  # one line: the numbers or the reasons
TAG_GATE_REPORT = "mlcycle.gate.report"  # JSON: every check with its numbers
TAG_PREVIOUS_CHAMPION = "mlcycle.previous_champion"
TAG_TEST_DATA = "test_data_uri"  # the candidate's test split (Parquet with the target)
TAG_PRIMARY_METRIC = "primary_metric"
TAG_ROOT_RUN = "root_run_id"  # the pipeline run that made the version (lineage)
AUDIT_PREFIX = "mlcycle.audit."
# On a pipeline's root run: what it registered; on it and its register stage's run: the
# aliases the version got and whether the gate promoted it.
REGISTERED_MODEL_TAG = "mlcycle.registered_model"
REGISTERED_VERSION_TAG = "mlcycle.registered_version"
ALIASES_TAG = "mlcycle.aliases"
PROMOTED_TAG = "mlcycle.promoted"


class RegistryError(MlcycleError):
    """A registry operation cannot be done as asked (unknown version, no champion, ...)."""


class RegistryConflict(RegistryError):
    """An alias did not hold the value just written: another writer bypassed the lock."""


# --------------------------------------------------------------------------- audit trail
def current_user() -> str:
    if user := os.environ.get("MLCYCLE_USER"):
        return user
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers)
        return "unknown"


_clock_lock = threading.Lock()
_last_stamp: list[dt.datetime] = []


def _now() -> dt.datetime:
    """UTC now, strictly increasing within this process (audit keys sort in move order)."""
    with _clock_lock:
        now = dt.datetime.now(dt.UTC)
        if _last_stamp and now <= _last_stamp[0]:
            now = _last_stamp[0] + dt.timedelta(microseconds=1)
        _last_stamp[:] = [now]
        return now


def audit(client: MlflowClient, name: str, entry: dict) -> str:
    """Store one audit entry as a tag on the registered model; returns the tag key.

    Key ``mlcycle.audit.<UTC time>-<random>``: sorts by time, unique without coordination.
    Value: one line of JSON (at, user, action, alias, from, to, reason, gate numbers).
    """
    now = _now()
    record = {"at": now.isoformat(timespec="microseconds").replace("+00:00", "Z"), "user": current_user(), **entry}
    key = f"{AUDIT_PREFIX}{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{secrets.token_hex(2)}"
    client.set_registered_model_tag(name, key, json.dumps(record, default=str))
    return key


def history(client: MlflowClient, name: str) -> list[dict]:
    """Every audit entry of a registered model, oldest first."""
    tags = client.get_registered_model(name).tags
    entries = []
    for key in sorted(k for k in tags if k.startswith(AUDIT_PREFIX)):
        try:
            entries.append(json.loads(tags[key]))
        except json.JSONDecodeError:
            entries.append({"raw": tags[key]})
    return entries


# --------------------------------------------------------------------------- aliases
def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def move_alias(
    client: MlflowClient, name: str, alias: str, version: str, *, action: str, reason: str,
    gate: dict | None = None, extra: dict | None = None,
) -> dict:
    """Point ``alias`` at ``version``, re-read it, and record the move. Call under the lock."""
    before = alias_version(client, name, alias)
    client.set_registered_model_alias(name, alias, version)
    after = alias_version(client, name, alias)
    if after != str(version):
        raise RegistryConflict(
            f"{name}@{alias} is version {after} right after mlcycle set it to {version}: another "
            "writer moved it without the registry lock"
        )
    entry = {"action": action, "alias": alias, "from": before, "to": str(version), "reason": reason}
    if gate is not None:
        entry["gate"] = gate
    entry.update(extra or {})
    audit(client, name, entry)
    return entry


# --------------------------------------------------------------------------- registration
@dataclass(frozen=True)
class Promotion:
    name: str
    version: str
    promoted: bool
    verdict: str  # passed | failed | forced | disabled | already-champion
    summary: str
    previous_champion: str | None = None
    decision: gate_mod.Decision | None = None

    def metrics(self) -> dict[str, float]:
        """The gate's numbers, comparable across runs in the UI."""
        checks = self.decision.checks if self.decision is not None else ()
        out = {}
        for c in checks:
            if c.candidate is not None and c.champion is not None:
                out |= {f"gate_candidate_{c.metric}": c.candidate, f"gate_champion_{c.metric}": c.champion}
        return out


def gate_policy(cfg: GateConfig, task: Task, primary: str | None = None) -> gate_mod.GatePolicy:
    from mlcycle.core.evaluation import primary_metric

    return gate_mod.GatePolicy(
        primary_metric=primary or primary_metric(cfg.primary_metric, task),
        min_absolute_change=cfg.min_absolute_change,
        min_relative_change=cfg.min_relative_change,
        thresholds={m: v for m, v in cfg.thresholds.items() if v is not None},
        guards={m: v for m, v in cfg.guard_metrics.items() if v is not None},
    )


@dataclass
class Candidate:
    """What the gate needs about the version to promote."""

    version: str
    task: Task
    metrics: dict[str, float]  # scored on ``test``
    test: pd.DataFrame  # labelled test set the champion is re-scored on
    target: str
    primary_metric: str | None = None
    notes: dict = field(default_factory=dict)


def promote(
    client: MlflowClient, name: str, candidate: Candidate, gate_cfg: GateConfig, lock_cfg: LockConfig, *,
    champion_alias: str, force: bool = False, reason: str | None = None,
) -> Promotion:
    """The compare-and-set: under the lock, gate ``candidate`` against the current champion
    (re-scored on the candidate's test set) and move ``champion`` when it passes (or ``force``)."""
    with registry_lock(mlflow.get_tracking_uri(), lock_cfg, name):
        return promote_locked(client, name, candidate, gate_cfg, champion_alias=champion_alias, force=force, reason=reason)


def promote_locked(
    client: MlflowClient, name: str, candidate: Candidate, gate_cfg: GateConfig, *, champion_alias: str,
    force: bool = False, reason: str | None = None,
) -> Promotion:
    """``promote``'s body, for a caller that holds the registry lock already."""
    from mlcycle.core.evaluation import greater_is_better, metric_names

    policy = gate_policy(gate_cfg, candidate.task, candidate.primary_metric)
    for _ in range(3):  # retry if a non-cooperating writer moved the champion meanwhile
        champion = alias_version(client, name, champion_alias)
        if champion == candidate.version:
            return Promotion(name, candidate.version, False, "already-champion",
                             f"version {candidate.version} is already {champion_alias}", champion)
        champion_metrics, error, ignored = None, None, None
        if champion is not None and not force and gate_cfg.enabled:
            champion_metrics, error = _score_champion(name, champion, candidate)
            if error is not None and gate_cfg.on_champion_error is ChampionError.promote:
                ignored, error = error, None
        decision = gate_mod.decide(
            policy, candidate.metrics, champion_metrics, greater_is_better=greater_is_better,
            applicable=metric_names(candidate.task), champion_version=champion, champion_error=error,
        )
        if alias_version(client, name, champion_alias) == champion:
            break
    else:
        raise RegistryConflict(f"{name}@{champion_alias} kept moving while mlcycle held the registry lock")

    if force:
        verdict, summary = "forced", f"forced by {current_user()}; gate not applied"
    elif not gate_cfg.enabled:
        verdict, summary = "disabled", "gate disabled (registry.gate.enabled=false)"
    else:
        verdict, summary = ("passed" if decision.passed else "failed"), decision.summary()
    report = {**decision.to_dict(), "verdict": verdict, **candidate.notes}
    if ignored is not None:
        summary = (f"{summary}; champion version {champion} could not be scored ({ignored}) and was "
                   "ignored (registry.gate.on_champion_error=promote)")
        report["champion_error_ignored"] = ignored
    client.set_model_version_tag(name, candidate.version, TAG_GATE, verdict)
    client.set_model_version_tag(name, candidate.version, TAG_GATE_SUMMARY, summary)
    client.set_model_version_tag(name, candidate.version, TAG_GATE_REPORT, json.dumps(report, default=str))
    promoted = verdict in ("passed", "forced", "disabled")
    if promoted:
        if champion is not None:  # before the move: what a rollback (or an interrupted registration) restores
            client.set_model_version_tag(name, candidate.version, TAG_PREVIOUS_CHAMPION, champion)
        text = summary if not reason else f"{reason} ({summary})"
        move_alias(client, name, champion_alias, candidate.version, action="force" if force else "promote",
                   reason=text, gate=report)
    else:  # not a move, but part of the history: who tried, and the numbers that said no
        audit(client, name, {"action": "rejected", "alias": champion_alias, "from": champion, "to": champion,
                             "candidate": candidate.version, "reason": summary, "gate": report})
    return Promotion(name, candidate.version, promoted, verdict, summary, champion, decision)


def _score_champion(name: str, version: str, candidate: Candidate) -> tuple[dict | None, str | None]:
    """The champion's metrics on the candidate's test set, or the reason it cannot be scored."""
    try:
        loaded = load_model(f"models:/{name}/{version}")
        if loaded.task is not None and loaded.task is not candidate.task:
            return None, f"it is a {loaded.task.value} model, the candidate is {candidate.task.value}"
        return score(loaded, candidate.test, candidate.target), None
    except Exception as exc:
        return None, first_line(exc)


def rollback(client: MlflowClient, name: str, lock_cfg: LockConfig, *, champion_alias: str,
             to_version: str | None = None, reason: str | None = None) -> dict:
    """Move ``champion`` back to the version it replaced (or to ``to_version``)."""
    with registry_lock(mlflow.get_tracking_uri(), lock_cfg, name):
        current = alias_version(client, name, champion_alias)
        if current is None and to_version is None:
            raise RegistryError(f"{name} has no {champion_alias} to roll back")
        target = to_version
        if target is None:
            target = client.get_model_version(name, current).tags.get(TAG_PREVIOUS_CHAMPION)
            if not target:
                raise RegistryError(
                    f"{name} version {current} has no previous {champion_alias} recorded; "
                    "name one with --to VERSION"
                )
        try:
            client.get_model_version(name, target)
        except MlflowException:
            raise RegistryError(f"{name} has no version {target}") from None
        if target == current:
            raise RegistryError(f"version {target} is already {champion_alias} of {name}")
        text = reason or f"rollback from version {current}"
        return move_alias(client, name, champion_alias, target, action="rollback", reason=text)


def registered_model(client: MlflowClient, name: str):
    """The registered model called ``name``, or None."""
    try:
        return client.get_registered_model(name)
    except MlflowException:
        return None


def aliases_of(name: str, version: str) -> tuple[str, ...]:
    """The aliases a version holds now (RegistryError when the version is gone)."""
    try:
        return tuple(MlflowClient().get_model_version(name, version).aliases)
    except MlflowException:
        raise RegistryError(f"registered version {name}/{version} no longer exists") from None


def resolve_version(client: MlflowClient, name: str, ref: str) -> str:
    """A version number or an alias name -> the version number."""
    if ref.isdigit():
        try:
            return str(client.get_model_version(name, ref).version)
        except MlflowException:
            raise RegistryError(f"registered model {name!r} has no version {ref}") from None
    version = alias_version(client, name, ref)
    if version is None:
        raise RegistryError(f"registered model {name!r} has no alias {ref!r}")
    return version

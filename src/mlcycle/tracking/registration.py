"""Registering a logged model: all or nothing, exactly once.

``register_and_gate`` takes the registry lock FIRST (a lock timeout creates nothing), then:
create the version, tagged ``pending`` with its owner process and an idempotency key ->
``challenger`` -> the gate (``registry.promote_locked``: gate tags, ``champion`` when it
passes) -> a one-line description -> ``complete``. Any failure after the version exists
(an error, SIGTERM) takes it back out (``withdraw``: the previous champion restored if it
had moved, the version deleted). A version a SIGKILLed process left ``pending`` is withdrawn
by the next registration of that model, once its owner is certainly gone.

Exactly once: MLflow's HTTP client retries a create whose response was lost, which leaves
a second version; each create carries a fresh idempotency key, and every other version with
that key is deleted right after. A retried ``logged-models`` create leaves a LoggedModel
that stays PENDING: ``end_ghost_models`` ends those of a run FAILED.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlcycle.config.registry import RegistryConfig
from mlcycle.core.liveness import owner_is_dead, owner_token
from mlcycle.tracking.locks import registry_lock
from mlcycle.tracking.registry import (
    ALIASES_TAG,
    PROMOTED_TAG,
    TAG_GATE,
    TAG_GATE_SUMMARY,
    TAG_PREVIOUS_CHAMPION,
    TAG_PRIMARY_METRIC,
    TAG_ROOT_RUN,
    Candidate,
    Promotion,
    alias_version,
    audit,
    move_alias,
    promote_locked,
)
from mlcycle.tracking.runs import ActiveRun, new_token

log = logging.getLogger(__name__)

STATUS_TAG = "mlcycle.registration"  # pending while being registered; complete once gated
PENDING, COMPLETE = "pending", "complete"
OWNER_TAG = "mlcycle.registered_by"  # host:pid:start of the registering process
IDEMPOTENCY_TAG = "mlcycle.idempotency_key"
FAMILY_TAG = "model_family"  # the model config group (hist_gradient_boosting, ...)
REPORT_ARTIFACT = "report.html"


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    aliases: tuple[str, ...]
    promotion: Promotion

    def log_to(self, run: ActiveRun, champion_alias: str) -> None:
        """Say the outcome (a warning when not promoted) and record it on the register run."""
        p = self.promotion
        (log.info if p.promoted else log.warning)(
            "%s version %s: %s (%s)", self.name, self.version,
            f"promoted to {champion_alias}" if p.promoted else "not promoted", p.summary,
        )
        run.log.log_params({"registered_model": self.name, "version": self.version})
        run.log.log_metrics(p.metrics())
        run.log.set_tags({ALIASES_TAG: ",".join(self.aliases), TAG_GATE: p.verdict, TAG_GATE_SUMMARY: p.summary[:5000],
                          PROMOTED_TAG: str(p.promoted).lower()})


def register_and_gate(model_uri: str, tags: dict[str, str], candidate: Candidate, reg: RegistryConfig) -> Registration:
    """Register a new version all or nothing (see the module docstring) and gate it."""
    client, name = MlflowClient(), reg.model_name
    with registry_lock(mlflow.get_tracking_uri(), reg.lock, name):
        withdraw_abandoned(client, name, reg.champion_alias)
        candidate.version = create_version(client, name, model_uri, {**tags, STATUS_TAG: PENDING, OWNER_TAG: owner_token()})
        try:
            move_alias(client, name, reg.challenger_alias, candidate.version, action="register",
                       reason=f"new version from run {tags.get(TAG_ROOT_RUN, '?')}")
            promotion = promote_locked(client, name, candidate, reg.gate, champion_alias=reg.champion_alias)
            client.update_model_version(name, candidate.version, description=description(tags, candidate, promotion))
            client.set_model_version_tag(name, candidate.version, STATUS_TAG, COMPLETE)
        except BaseException as exc:
            withdraw(client, name, candidate.version, reg.champion_alias, f"registration failed: {type(exc).__name__}")
            raise
    aliases = (reg.challenger_alias, reg.champion_alias) if promotion.promoted else (reg.challenger_alias,)
    return Registration(name, candidate.version, aliases, promotion)


def create_version(client: MlflowClient, name: str, model_uri: str, tags: dict[str, str]) -> str:
    """A new version of ``name`` for ``model_uri``, created exactly once however often the
    client retried the request."""
    key = new_token()
    version = str(mlflow.register_model(model_uri, name, tags={**tags, IDEMPOTENCY_TAG: key}).version)
    twins = client.search_model_versions(f"name = '{name}' and tags.`{IDEMPOTENCY_TAG}` = '{key}'")
    for twin in twins:
        if str(twin.version) != version:
            log.warning("deleting %s version %s: a duplicate a retried request created", name, twin.version)
            client.delete_model_version(name, twin.version)
    return version


def withdraw(client: MlflowClient, name: str, version: str, champion_alias: str, reason: str) -> None:
    """Take a version that did not finish registering back out: give ``champion`` back to
    the version it replaced if it had moved, then delete the version. Best effort: a failure
    here is logged, and the version is still ``pending`` for the next registration."""
    try:
        previous = client.get_model_version(name, version).tags.get(TAG_PREVIOUS_CHAMPION)
        if previous and alias_version(client, name, champion_alias) == version:
            move_alias(client, name, champion_alias, previous, action="restore", reason=f"version {version}: {reason}")
        client.delete_model_version(name, version)
        audit(client, name, {"action": "withdrawn", "alias": None, "from": version, "to": None, "reason": reason})
        log.warning("%s version %s withdrawn: %s", name, version, reason)
    except Exception as exc:  # noqa: BLE001 - the original failure matters more
        log.warning("could not withdraw %s version %s (%s): %s", name, version, reason, exc)


def withdraw_abandoned(client: MlflowClient, name: str, champion_alias: str) -> list[str]:
    """Withdraw the versions of ``name`` still ``pending`` whose registering process is gone."""
    try:
        pending = client.search_model_versions(f"name = '{name}' and tags.`{STATUS_TAG}` = '{PENDING}'")
    except MlflowException:
        return []  # no such registered model yet
    gone = [str(v.version) for v in pending if owner_is_dead(v.tags.get(OWNER_TAG)) is True]
    for version in gone:
        withdraw(client, name, version, champion_alias, "its registering process is gone")
    return gone


def description(tags: dict[str, str], candidate: Candidate, promotion: Promotion) -> str:
    """The registry page's one line: family, headline test metric, the gate, the report."""
    metric = tags.get(TAG_PRIMARY_METRIC) or candidate.primary_metric
    value = candidate.metrics.get(metric) if metric else None
    parts = [tags.get(FAMILY_TAG) or "model"]
    if value is not None:
        parts.append(f"test {metric} {value:.4f}")
    parts.append(f"gate {promotion.verdict}" + (" -> champion" if promotion.promoted else "") + f": {promotion.summary}")
    if root := tags.get(TAG_ROOT_RUN):
        parts.append(f"report: runs:/{root}/{REPORT_ARTIFACT}")
    return " | ".join(parts)[:5000]


def end_ghost_models(client: MlflowClient, experiment_id: str, run_id: str, kept_model_id: str) -> list[str]:
    """LoggedModels of ``run_id`` left PENDING by a retried create (not ``kept_model_id``) end FAILED."""
    models = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
    ended = [m.model_id for m in models if m.model_id != kept_model_id and str(m.status) == "PENDING"]
    for model_id in ended:
        log.warning("ending logged model %s FAILED: a duplicate a retried request created", model_id)
        client.finalize_logged_model(model_id, "FAILED")
    return ended

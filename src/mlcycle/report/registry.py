"""The registry section of the report card: what was registered, the gate's verdict and each
of its checks as a table, the aliases now, and the version's tags under readable names.

The tag names are those of ``tracking.registry``, ``tracking.registration``,
``tracking.model_io`` and ``tracking.lineage``; this module only gives them labels. The gate's
checks come from the version's ``mlcycle.gate.report`` (JSON, ``core.gate.Decision.to_dict``),
or, when the version is gone, from the ``gate_candidate_*`` / ``gate_champion_*`` metrics of
the register run.
"""

from __future__ import annotations

import json
from typing import Any

from mlflow.exceptions import MlflowException

from mlcycle.core.liveness import HOST_TAG, PID_TAG, START_TAG
from mlcycle.report.tree import RunTree
from mlcycle.tracking.cache import CACHE_TAG, FINGERPRINT_TAG, MANIFEST_TAG, REASON_TAG
from mlcycle.tracking.model_io import MANIFEST_TAG as MODEL_MANIFEST_TAG
from mlcycle.tracking.model_io import MODEL_URI_TAG
from mlcycle.tracking.registration import FAMILY_TAG, IDEMPOTENCY_TAG, OWNER_TAG, STATUS_TAG
from mlcycle.tracking.registry import (
    ALIASES_TAG,
    PROMOTED_TAG,
    REGISTERED_MODEL_TAG,
    REGISTERED_VERSION_TAG,
    TAG_GATE,
    TAG_GATE_REPORT,
    TAG_GATE_SUMMARY,
    TAG_PREVIOUS_CHAMPION,
    TAG_PRIMARY_METRIC,
    TAG_ROOT_RUN,
    TAG_TEST_DATA,
)
from mlcycle.tracking.runs import (
    ERROR_TAG,
    KIND_TAG,
    SOURCE_TAG,
    STAGE_TAG,
    TIME_METRICS,
    TOKEN_TAG,
)

# A version's tags as a reader names them, in the order shown.
VERSION_LABELS = {
    TAG_ROOT_RUN: "made by pipeline run",
    FAMILY_TAG: "model family",
    "task": "task",
    TAG_PRIMARY_METRIC: "primary metric",
    TAG_TEST_DATA: "test split the gate scored on",
    "data_digest": "data digest",
    "config_fingerprint": "config fingerprint",
    "git_commit": "git commit",
    "git_dirty": "uncommitted changes",
    "mlcycle_version": "mlcycle version",
    "source_digest": "mlcycle source digest",
    TAG_PREVIOUS_CHAMPION: "previous champion (a rollback restores it)",
    STATUS_TAG: "registration",
    OWNER_TAG: "registered by (host:pid:start)",
}
# Shown in another form (the gate, the test metrics, the file count) or of no use to a reader.
SHOWN_ELSEWHERE = {TAG_GATE, TAG_GATE_SUMMARY, TAG_GATE_REPORT, MODEL_MANIFEST_TAG, IDEMPOTENCY_TAG}
# Tags of the register run shown in another form, or about the run rather than the registration.
RUN_TAGS = {ALIASES_TAG, MODEL_URI_TAG, TAG_GATE, TAG_GATE_SUMMARY, PROMOTED_TAG, CACHE_TAG, REASON_TAG, SOURCE_TAG,
            FINGERPRINT_TAG, MANIFEST_TAG, ERROR_TAG, STAGE_TAG, KIND_TAG, TOKEN_TAG, HOST_TAG, PID_TAG, START_TAG}
CHECK_LABELS = {
    "threshold": "reaches the threshold",
    "improvement": "better than the champion",
    "guard": "not too much worse than the champion",
    "champion": "champion could be scored",
}
VERDICT_TEXT = {
    "passed": "passed", "failed": "failed", "forced": "forced (gate not applied)",
    "disabled": "disabled", "already-champion": "already champion",
}


def registry_section(tree: RunTree) -> dict[str, Any]:
    stage = tree.stages["register"]
    p, m, tags = stage.params, stage.metrics, stage.tags
    name = p.get("registered_model") or tree.root_tags.get(REGISTERED_MODEL_TAG)
    version = p.get("version") or tree.root_tags.get(REGISTERED_VERSION_TAG)
    out: dict[str, Any] = {
        "stage": stage.info(),
        "model_name": name,
        "version": version,
        "aliases": [a for a in (tags.get(ALIASES_TAG) or "").split(",") if a],
        "model_uri": tags.get(MODEL_URI_TAG),
        "gate": tags.get(TAG_GATE),
        "gate_text": VERDICT_TEXT.get(tags.get(TAG_GATE, ""), tags.get(TAG_GATE)),
        "gate_summary": tags.get(TAG_GATE_SUMMARY),
        "promoted": _yes_no(tags.get(PROMOTED_TAG)),
        "champion_version": None,
        "checks": _checks_from_metrics(m),
        "version_details": {},
        "other_tags": {},
        "files": None,
        "current_aliases": {},
        "registry_problem": None,
        # anything else the stage logged (a newer feature's numbers), under its own name
        "logged": {
            **{k: v for k, v in p.items() if k not in ("registered_model", "version")},
            **{k: v for k, v in m.items() if k not in TIME_METRICS and not k.startswith("gate_")},
            **{k: v for k, v in tags.items() if k.startswith("mlcycle.") and k not in RUN_TAGS
               and not k.startswith(CACHE_TAG)},
        },
    }
    if not (name and version):
        return out
    try:
        mv = tree.client.get_model_version(name, version)
        out["current_aliases"] = dict(sorted(tree.client.get_registered_model(name).aliases.items()))
    except MlflowException as exc:
        out["registry_problem"] = f"{name} v{version} is no longer in the registry ({exc.error_code})"
        return out
    vtags = dict(mv.tags)
    out["gate"] = vtags.get(TAG_GATE, out["gate"])
    out["gate_text"] = VERDICT_TEXT.get(out["gate"] or "", out["gate"])
    out["gate_summary"] = vtags.get(TAG_GATE_SUMMARY, out["gate_summary"])
    if report := vtags.get(TAG_GATE_REPORT):
        try:
            decision = json.loads(report)
            out["checks"] = [_check(c) for c in decision.get("checks", [])]
            out["champion_version"] = decision.get("champion_version")
        except (json.JSONDecodeError, AttributeError, TypeError) as exc:
            out["registry_problem"] = f"the gate report of {name} v{version} is not readable ({exc})"
    out["version_details"] = {label: vtags[key] for key, label in VERSION_LABELS.items() if vtags.get(key)}
    if files := vtags.get(MODEL_MANIFEST_TAG):
        try:
            out["files"] = len(json.loads(files))
        except (json.JSONDecodeError, TypeError):
            out["files"] = None
    out["other_tags"] = {
        k: v for k, v in sorted(vtags.items())
        if k not in VERSION_LABELS and k not in SHOWN_ELSEWHERE and not k.startswith("test_")
    }
    return out


def _check(raw: dict[str, Any]) -> dict[str, Any]:
    kind = raw.get("kind", "")
    return {
        "check": CHECK_LABELS.get(kind, kind), "metric": raw.get("metric"), "candidate": raw.get("candidate"),
        "champion": raw.get("champion"), "bound": raw.get("bound"),
        "result": "skipped" if raw.get("skipped") else "passed" if raw.get("passed") else "failed",
        "message": raw.get("message", ""),
    }


def _checks_from_metrics(metrics: dict[str, float]) -> list[dict[str, Any]]:
    """The numbers the register run logged, when the version's own report cannot be read."""
    names = sorted(k.removeprefix("gate_candidate_") for k in metrics if k.startswith("gate_candidate_"))
    return [
        {"check": "compared with the champion", "metric": n, "candidate": metrics[f"gate_candidate_{n}"],
         "champion": metrics.get(f"gate_champion_{n}"), "bound": None, "result": "", "message": ""}
        for n in names
    ]


def _yes_no(flag: str | None) -> str | None:
    return {"true": "yes", "false": "no"}.get((flag or "").lower())

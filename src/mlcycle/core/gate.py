"""The promotion gate: may a candidate model replace the champion? Pure: no mlflow, no hydra.

Semantics follow MLflow's ``MetricThreshold`` (``mlflow.validate_evaluation_results``):

* absolute thresholds: ``candidate >= threshold`` when greater is better, ``<=`` otherwise;
* improvement over the champion on the primary metric: the candidate must be better by at
  least ``min_absolute_change`` AND by at least ``min_relative_change * |champion|`` (the
  magnitude keeps the direction right for negative values such as R² < 0). When both are 0
  the candidate must be strictly better: a tie does not move the champion;
* guard metrics (mlcycle's addition): the candidate may be worse than the champion on each
  guard metric by at most its tolerance (absolute, in the metric's own unit).

Why not call ``mlflow.validate_evaluation_results``: it raises one exception whose message
concatenates the failures, while the registry needs every check's numbers as data (for the
audit trail, the version tags and the console); ``MetricThreshold`` also refuses a zero change
and has no notion of a tolerated regression. The comparison itself is a few lines; it lives
here so it can be tested without a tracking store.

Metrics that do not apply to the model's task (``log_loss`` for a regressor) are skipped and
reported as such, so one gate configuration serves every task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field

EPS = 1e-12  # float noise allowed on ">=" comparisons


@dataclass(frozen=True)
class GatePolicy:
    primary_metric: str
    min_absolute_change: float = 0.0
    min_relative_change: float = 0.0
    thresholds: Mapping[str, float] = field(default_factory=dict)  # metric -> bound
    guards: Mapping[str, float] = field(default_factory=dict)  # metric -> tolerated regression

    def __post_init__(self) -> None:
        if self.min_absolute_change < 0 or self.min_relative_change < 0:
            raise ValueError("min_absolute_change and min_relative_change must be >= 0")
        bad = {m: t for m, t in self.guards.items() if t < 0}
        if bad:
            raise ValueError(f"guard tolerances must be >= 0, got {bad}")


@dataclass(frozen=True)
class Check:
    kind: str  # threshold | improvement | guard | champion
    metric: str
    passed: bool
    message: str
    candidate: float | None = None
    champion: float | None = None
    bound: float | None = None  # the value the candidate had to reach
    skipped: bool = False


@dataclass(frozen=True)
class Decision:
    passed: bool
    checks: tuple[Check, ...]
    primary_metric: str
    champion_version: str | None = None

    @property
    def reasons(self) -> list[str]:
        """Why the gate failed (empty when it passed)."""
        return [c.message for c in self.checks if not c.passed]

    def summary(self) -> str:
        """One line for the console, a tag and the audit trail."""
        if self.passed:
            main = next((c for c in self.checks if c.kind == "improvement"), None)
            if main is None:
                met = "thresholds met" if any(c.kind == "threshold" for c in self.checks) else "no thresholds set"
                return f"gate passed (no champion compared; {met})"
            return f"gate passed: {main.message}"
        return "gate failed: " + "; ".join(self.reasons)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "primary_metric": self.primary_metric,
            "champion_version": self.champion_version,
            "checks": [{k: v for k, v in asdict(c).items() if v is not None} for c in self.checks],
        }


def decide(
    policy: GatePolicy,
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    greater_is_better: Callable[[str], bool],
    applicable: Iterable[str],
    champion_version: str | None = None,
    champion_error: str | None = None,
) -> Decision:
    """Run every check. ``champion`` is None when there is no champion (or it could not be
    scored: then ``champion_error`` says why and the gate fails on it)."""
    applicable = set(applicable)
    checks: list[Check] = []
    for metric, bound in policy.thresholds.items():
        checks.append(_threshold(metric, float(bound), candidate, greater_is_better(metric), applicable))
    if champion_error is not None:
        checks.append(
            Check("champion", policy.primary_metric, False,
                  f"champion version {champion_version} could not be scored on the candidate's test set: {champion_error}")
        )
    elif champion is not None:
        checks.append(_improvement(policy, candidate, champion, greater_is_better(policy.primary_metric)))
        for metric, tolerance in policy.guards.items():
            checks.append(_guard(metric, float(tolerance), candidate, champion, greater_is_better(metric), applicable))
    passed = all(c.passed for c in checks)
    return Decision(passed, tuple(checks), policy.primary_metric, champion_version)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _threshold(metric, bound, candidate, gib, applicable) -> Check:
    if metric not in applicable:
        return Check("threshold", metric, True, f"{metric}: does not apply to this task (skipped)", bound=bound, skipped=True)
    if metric not in candidate:
        return Check("threshold", metric, False, f"{metric}: missing from the candidate's metrics", bound=bound)
    value = float(candidate[metric])
    ok = value >= bound - EPS if gib else value <= bound + EPS
    op = ">=" if gib else "<="
    verdict = "" if ok else "not "
    return Check("threshold", metric, ok, f"{metric} {_fmt(value)} {verdict}{op} threshold {_fmt(bound)}", value, None, bound)


def _improvement(policy: GatePolicy, candidate, champion, gib) -> Check:
    metric = policy.primary_metric
    if metric not in candidate or metric not in champion:
        side = "candidate" if metric not in candidate else "champion"
        return Check("improvement", metric, False, f"{metric}: missing from the {side}'s metrics")
    cand, champ = float(candidate[metric]), float(champion[metric])
    needed = max(policy.min_absolute_change, policy.min_relative_change * abs(champ))
    gain = cand - champ if gib else champ - cand  # > 0 means the candidate is better
    ok = gain > 0 if needed == 0 else gain >= needed - EPS
    bound = champ + needed if gib else champ - needed
    sign = "+" if cand >= champ else "-"
    if needed == 0:
        rule = "must be better than the champion"
    else:
        rule = f"needs {'+' if gib else '-'}{_fmt(needed)}"
    message = f"{metric} {_fmt(cand)} vs champion {_fmt(champ)} ({sign}{_fmt(abs(cand - champ))}; {rule})"
    return Check("improvement", metric, ok, message, cand, champ, bound)


def _guard(metric, tolerance, candidate, champion, gib, applicable) -> Check:
    if metric not in applicable:
        return Check("guard", metric, True, f"{metric}: does not apply to this task (skipped)", skipped=True)
    if metric not in candidate or metric not in champion:
        side = "candidate" if metric not in candidate else "champion"
        return Check("guard", metric, False, f"guard {metric}: missing from the {side}'s metrics")
    cand, champ = float(candidate[metric]), float(champion[metric])
    regression = champ - cand if gib else cand - champ  # > 0 means the candidate is worse
    ok = regression <= tolerance + EPS
    bound = champ - tolerance if gib else champ + tolerance
    worse = f"worse by {_fmt(regression)}" if regression > 0 else "not worse"
    verdict = "within" if ok else "beyond"
    message = f"guard {metric} {_fmt(cand)} vs champion {_fmt(champ)} ({worse}; {verdict} tolerance {_fmt(tolerance)})"
    return Check("guard", metric, ok, message, cand, champ, bound)

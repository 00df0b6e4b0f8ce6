"""Pictures of a study: the optimization history and the parameter importances. Pure: no
mlflow, no hydra.

``history_figure`` is the one drawing of the optimization history: the tune stage logs it
(``study_figures``) and the report card draws it from trial runs when none was logged
(``report.figures``). Figures are ``matplotlib.figure.Figure`` objects (no pyplot: no global
state, no backend to choose).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import optuna
from optuna.trial import TrialState


def best_so_far(values: Sequence[float], greater: bool) -> list[float]:
    out: list[float] = []
    for value in values:
        out.append(value if not out else (max if greater else min)(out[-1], value))
    return out


def history_figure(numbers: Sequence[int], values: Sequence[float], complete: Sequence[bool], metric: str,
                   greater: bool):
    """Each scored trial's value by trial number (complete ones as dots, pruned ones as
    crosses) and the best complete value so far. Trial numbers are whole: so are the ticks."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.subplots()
    done = [(n, v) for n, v, c in zip(numbers, values, complete, strict=True) if c]
    others = [(n, v) for n, v, c in zip(numbers, values, complete, strict=True) if not c]
    if done:
        ax.scatter(*zip(*done, strict=True), s=18, color="#2563eb", label="trial", zorder=3)
        ax.step([n for n, _ in done], best_so_far([v for _, v in done], greater), where="post", color="#dc2626",
                lw=1.5, label="best so far")
    if others:
        ax.scatter(*zip(*others, strict=True), s=18, color="#9ca3af", marker="x", label="pruned", zorder=2)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="trial", ylabel=f"cv {metric}", title=f"Optimization history ({'higher' if greater else 'lower'} is better)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def importance_figure(importances: dict[str, float]):
    """Horizontal bars, the most important parameter on top."""
    from matplotlib.figure import Figure

    names = list(importances)[::-1]
    fig = Figure(figsize=(6.4, 1.2 + 0.4 * len(names)))
    ax = fig.subplots()
    ax.barh(names, [importances[n] for n in names], color="#2563eb")
    ax.set_xlim(0, 1)
    ax.set(xlabel="importance (fANOVA)", title="Hyperparameter importances")
    fig.tight_layout()
    return fig


def study_figures(study: optuna.Study, seed: int, metric: str = "score") -> tuple[dict, dict[str, float]]:
    """Optimization history and parameter importances (figures by file name), and the
    importances themselves. Needs 1 and 2 complete trials respectively; with fewer, that
    figure is left out."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    figures: dict = {}
    importances: dict[str, float] = {}
    if not complete:
        return figures, importances
    greater = study.direction.name == "MAXIMIZE"
    figures["optimization_history.png"] = history_figure(
        [t.number for t in complete], [t.value for t in complete], [True] * len(complete), metric, greater
    )
    names = list(dict.fromkeys(p for t in complete for p in t.params))
    varying = [p for p in names if len({repr(t.params.get(p)) for t in complete if p in t.params}) > 1]
    # fANOVA rates the trials holding every parameter asked for: in a search over families
    # (model=auto) none holds them all, so then the family and what every trial has
    shared = [p for p in varying if all(p in t.params for t in complete)]
    for params in [p for p in (varying, shared) if p] if len(complete) >= 2 else []:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
                importances = optuna.importance.get_param_importances(study, evaluator=evaluator, params=params)
            break
        except (RuntimeError, ValueError):
            importances = {}
    if importances:
        figures["param_importances.png"] = importance_figure(importances)
    return figures, {k: float(v) for k, v in importances.items()}

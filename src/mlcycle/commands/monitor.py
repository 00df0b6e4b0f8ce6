"""``mlcycle monitor [overrides...]``: drift and decay of the watched model on a new batch.

Exit codes: 0 ok, 10 drift, 11 decay (``monitor.exit_codes=false``: 0 for any verdict);
2 bad input or configuration, 1 anything else (including a failed retrain).
"""

from __future__ import annotations

from mlcycle.cli import command

HELP = """usage: mlcycle monitor [key=value ...]

Compares a new batch with the training data of the watched model (found through its
MLflow lineage), logs a monitoring run with a verdict ok / drift / decay, and retrains when
the verdict reaches monitor.retrain_on. Configuration: conf/monitor.yaml, conf/monitor/.

  mlcycle monitor batch.path=new_sessions.csv          # a file (target column optional)
  mlcycle monitor batch.drift=2 batch.seed=7           # generated batch, drifted
  mlcycle monitor monitor.retrain_on=never             # report only
  mlcycle monitor monitor.model_name=mlcycle-csv monitor.model_version=3

Exit codes: 0 ok, 10 drift, 11 decay; 2 bad input/config, 1 other errors.
"""


@command
def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(HELP)
        return 0
    from mlcycle.config.load import compose
    from mlcycle.monitoring.monitor import monitor

    cfg = compose(argv, config_name="monitor")
    # The verdict first, as soon as it is known; then what it triggers, while it runs (the
    # retrain's own output goes to stderr: flushed lines keep the order in a shared log).
    result = monitor(cfg, on_verdict=lambda found: say(verdict(found, cfg)), say=say)
    say(outcome(result, cfg))
    if cfg.monitor.result_file:
        write_result(result, cfg.monitor.result_file)
    if result.retrain_error is not None:  # the verdict is logged; the action failed
        result.retrain_error.add_note("retrain")
        raise result.retrain_error
    return result.exit_code if cfg.monitor.exit_codes else 0


def say(text: str) -> None:
    print(text, flush=True)


def write_result(result, path: str) -> None:
    """The outcome as one JSON object, for an orchestrator to branch on."""
    from mlcycle.commands._common import write_result as write

    write({
        "run_id": result.run_id,
        "verdict": result.verdict,
        "exit_code": result.exit_code,
        "model": result.model.name,
        "version": result.model.version,
        "drifted_share": result.drifted_share,
        "labelled_rows": result.labelled_rows,
        "retrain_run_id": result.retrain.run_id if result.retrain else None,
        "retrain_failed": result.retrain_error is not None,
    }, path)


def verdict(found, cfg) -> str:
    """The table: one line per feature, the prediction, performance, the verdict."""
    from mlcycle.monitoring.page import tolerance

    m = cfg.monitor
    model = found.model
    lines = [
        f"mlcycle monitor: {model.name} v{model.version}" + (f" (@{model.alias})" if model.alias else ""),
        f"  batch: {found.batch_source} ({found.batch_rows} rows, {found.labelled_rows} labelled)",
        f"  {'feature':<24}{'kind':<12}{'PSI':>8}  {'test':<5}{'p-value':>10}  drifted",
    ]
    rows = [*found.features, *([found.prediction] if found.prediction else [])]
    for r in rows:
        p = "<1e-300" if r.p_value == 0 else f"{r.p_value:.2g}"
        lines.append(f"  {r.feature[:23]:<24}{r.kind:<12}{r.psi:>8.3f}  {r.test:<5}{p:>10}  {'yes' if r.drifted else ''}")
    n_drifted = sum(r.drifted for r in found.features)
    lines.append(
        f"  drifted features: {n_drifted}/{len(found.features)} = {found.drifted_share:.0%} "
        f"(drift at >= {m.max_drifted_share:.0%}; PSI >= {m.psi_threshold} and p < {m.alpha})"
    )
    if (d := found.decay) is not None:
        lines.append(f"  {d.metric}: registered {d.baseline:.4f}, batch {d.current:.4f}, {d.change()} "
                     f"(decay at {tolerance(d.metric, m)})")
    elif found.labelled_rows == 0:
        lines.append("  performance: no labels in the batch, drift only")
    if found.note:
        lines.append(f"  note: {found.note}")
    lines.append(f"verdict: {found.verdict.upper()} (exit code {found.exit_code if m.exit_codes else 0})")
    return "\n".join(lines)


def outcome(result, cfg) -> str:
    """What the verdict triggered, once it has ended."""
    m = cfg.monitor
    if result.retrain is not None:
        r = result.retrain
        moved = f"champion v{r.champion_before} -> v{r.champion_after}" if r.champion_before != r.champion_after else f"champion stays v{r.champion_after}"
        return f"retrain: root run {r.run_id} on {r.data_rows} rows -> {result.model.name} v{r.version}; {moved}"
    if result.retrain_error is not None:
        return "retrain: FAILED (see the error below; the retrain's root run is tagged mlcycle.error)"
    if result.note.startswith("retrain"):
        return result.note
    return f"retrain: not triggered (monitor.retrain_on={m.retrain_on.value})"

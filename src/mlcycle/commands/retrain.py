"""``mlcycle retrain <monitoring-run-id> [overrides...]``: the action of a monitoring run, alone.

Trains on the watched model's reference data + the monitoring run's labelled batch, with
that model's own config, as a root run tagged ``mlcycle.triggered_by`` (a new one, or the
run ``MLFLOW_RUN_ID`` names: an orchestrator task's run, as for ``mlcycle train``). What
``mlcycle monitor`` does when its verdict reaches ``monitor.retrain_on``; separate so that
an orchestrator can run monitor and retrain as two tasks. At most once per monitoring run.
"""

from __future__ import annotations

import sys

from mlcycle.cli import command

HELP = """usage: mlcycle retrain <monitoring-run-id> [--result-file PATH] [key=value ...]

Overrides are those of conf/monitor.yaml, e.g. 'monitor.retrain_overrides=["tune.n_trials=5"]'
or monitor.retrain_reference_fraction=0.25. Refuses a monitoring run that already has a
retrain that did not fail. --result-file writes the outcome as JSON (run_id,
registered_version, promoted, ...) for an orchestrator.
"""


@command
def main(argv: list[str]) -> int:
    from mlcycle.commands._common import pop_result_file, write_result

    result_file, argv = pop_result_file(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0].startswith("-") or "=" in argv[0]:
        print(HELP, file=sys.stderr if not argv or argv[0] not in ("-h", "--help") else sys.stdout)
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    from mlcycle.config.load import compose
    from mlcycle.monitoring.retrain import retrain

    outcome = retrain(compose(argv[1:], config_name="monitor"), argv[0], announce=lambda line: print(line, flush=True))
    moved = "promoted to champion" if outcome.promoted else f"champion stays v{outcome.champion_after}"
    print(f"mlcycle retrain: root run {outcome.run_id} on {outcome.data_rows} rows -> version {outcome.version}; {moved}")
    if result_file:
        write_result({
            "run_id": outcome.run_id, "monitoring_run_id": argv[0], "registered_version": outcome.version,
            "promoted": outcome.promoted, "champion_before": outcome.champion_before,
            "champion_after": outcome.champion_after, "data_rows": outcome.data_rows,
        }, result_file)
    return 0

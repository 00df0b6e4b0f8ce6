"""``mlcycle predict``: batch-score a CSV/Parquet file with a registered model.

Writes the input rows plus ``prediction`` (and ``probability_<class>`` for classifiers) to
``--output`` (.csv or .parquet). The model's input columns and types come from its input
contract (the types its training data had), the same checks the served model applies. Rows
with a value that does not fit its column's type are left out and reported with their row
numbers (1 = first data row) and reasons, in the console and as
``scoring/rejected_rows.csv`` on the run (``--on-bad-rows fail`` stops instead). A missing
required column is one error listing every missing column; columns the model does not use
are ignored, kept in the output and reported. Each call is one MLflow run
(``mlcycle.run_kind=predict``) with the input file as a dataset input and the row counts as
metrics.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mlcycle.cli import command
from mlcycle.commands import _common

OUTPUT_SUFFIXES = (".csv", ".parquet", ".pq")


@command
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="mlcycle predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="CSV or Parquet file to score")
    parser.add_argument("--output", required=True, help="where to write predictions (.csv or .parquet)")
    parser.add_argument("--model-uri", help="any model URI (default: models:/<registry.model_name>@<champion>)")
    parser.add_argument("--on-bad-rows", choices=("skip", "fail"), default="skip",
                        help="skip: score the other rows and report the bad ones (default); fail: stop")
    args = _common.parse(parser, argv)
    from mlcycle.config.load import compose
    from mlcycle.core import data, threads
    from mlcycle.errors import DataError
    from mlcycle.tracking import hygiene, ui
    from mlcycle.tracking.model_io import MODEL_URI_TAG
    from mlcycle.tracking.runs import KIND_PREDICT, TIME_METRIC, root_run

    cfg = compose(args.overrides)
    _, uri = _common.connect(cfg)
    model_uri = args.model_uri or f"models:/{cfg.registry.model_name}@{cfg.registry.champion_alias}"
    source = data.resolve_path(args.input)
    output = data.resolve_path(args.output)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise DataError(f"--output must end in .csv or .parquet, got {output}")
    experiment_id = hygiene.open_experiment(uri, cfg.mlflow.experiment_name, cfg.mlflow.artifact_location, "predict")
    started = time.perf_counter()
    with root_run(experiment_id, f"predict-{source.stem}", {MODEL_URI_TAG: model_uri}, kind=KIND_PREDICT) as run:
        # "scoring." prefix: under `mlflow run` the entry point's own parameters (model_uri,
        # input, ...) are already logged on this run with their raw values
        run.log.log_params({"scoring.model_uri": model_uri, "scoring.input": str(source),
                            "scoring.output": str(output), "scoring.on_bad_rows": args.on_bad_rows})
        with threads.limited(cfg.threads_per_fit):
            summary = score_file(run, model_uri, source, output, args.on_bad_rows)
        run.log.log_metrics({TIME_METRIC: time.perf_counter() - started})
    print(summary)
    where = ui.browse(uri, ui.run_path(run.experiment_id, run.run_id))
    print(f"scoring run {run.run_id}" + (f"; browse: {where}" if where else ""))
    return 0


def score_file(run, model_uri: str, source: Path, output: Path, on_bad_rows: str) -> str:
    """Read, check, score, write; log counts, dataset and rejected rows on ``run``."""
    from mlcycle.config.schema import Task
    from mlcycle.core import data
    from mlcycle.core.scoring import InputColumn, check_input, describe_rejections, output_frame
    from mlcycle.errors import DataError
    from mlcycle.tracking.artifacts import log_input_file, log_text
    from mlcycle.tracking.model_io import load_model

    frame = data.read_table(source)
    loaded = load_model(model_uri)
    if loaded.name:
        run.log.set_tags({"mlcycle.model_name": loaded.name, "mlcycle.model_version": loaded.version})
    if not loaded.inputs:
        raise DataError(f"model {model_uri} has no column signature; cannot check the input columns")
    columns = [InputColumn(n, t, r) for n, t, r in loaded.inputs]
    log_input_file(frame, source, "scoring")
    checked = check_input(frame, columns, str(source))
    # Columns the model does not use are ignored by it (as by `mlflow models serve`), kept in
    # the output beside the predictions, and reported.
    ignored = [str(c) for c in frame.columns if c not in {col.name for col in columns}]
    if ignored:
        run.log.log_params({"scoring.ignored_columns": ignored})
    bad_rows = int((~checked.accepted).sum())
    run.log.log_metrics({"rows_in": len(frame), "rows_rejected": bad_rows, "rows_scored": int(checked.accepted.sum())})
    if bad_rows:
        log_text(checked.rejected.to_csv(index=False), "scoring/rejected_rows.csv")
        if on_bad_rows == "fail":
            raise DataError(f"{source}: {bad_rows} row(s) with bad values: {describe_rejections(checked.rejected)} "
                            f"(all of them: artifact scoring/rejected_rows.csv on run {run.run_id})")
    classifier = loaded.task is not Task.regression and hasattr(loaded.model, "predict_proba")
    if len(checked.frame):
        predictions = loaded.model.predict(checked.frame)
        proba = loaded.model.predict_proba(checked.frame) if classifier else None
    else:
        predictions, proba = [], ([] if classifier else None)
    out = output_frame(frame, checked.accepted, predictions, proba if classifier and len(checked.frame) else None,
                       loaded.classes if classifier else ())
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp")
    if output.suffix.lower() == ".csv":
        out.to_csv(tmp, index=False)
    else:
        out.to_parquet(tmp, index=False)
    tmp.replace(output)
    lines = [f"scored {len(out)} of {len(frame)} rows from {source} with {model_uri}"
             + (f" (version {loaded.version})" if loaded.version else "") + f" -> {output}"]
    if ignored:
        lines.append(f"ignored {len(ignored)} column(s) the model does not use (kept in the output): {', '.join(ignored)}")
    if bad_rows:
        lines.append(f"rejected {bad_rows} row(s): {describe_rejections(checked.rejected)}")
        lines.append(f"  all rejected rows: artifact scoring/rejected_rows.csv on run {run.run_id}")
    return "\n".join(lines)

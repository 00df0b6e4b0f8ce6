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

``--engine spark`` reads and scores the file with Spark (``mapInPandas`` on
``--spark-master``, default local[2]): the same checks and report, a Parquet folder as output,
memory that does not grow with the file. It needs pyspark and Java (``make spark-venv``).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from mlcycle.cli import command
from mlcycle.commands import _common

OUTPUT_SUFFIXES = (".csv", ".parquet", ".pq")
PANDAS, SPARK = "pandas", "spark"


@command
def main(argv: list[str]) -> int:
    parser = _common.parser("predict", __doc__)
    parser.add_argument("--input", required=True, help="CSV or Parquet file to score")
    parser.add_argument("--output", required=True, help="where to write predictions (.csv or .parquet)")
    parser.add_argument("--model-uri", help="any model URI (default: models:/<registry.model_name>@<champion>)")
    parser.add_argument("--on-bad-rows", choices=("skip", "fail"), default="skip",
                        help="skip: score the other rows and report the bad ones (default); fail: stop")
    parser.add_argument("--engine", choices=(PANDAS, SPARK), default=PANDAS,
                        help="pandas: the whole file in this process (default); spark: Spark reads and scores it, "
                             "writes a Parquet folder (needs pyspark and Java: make spark-venv)")
    parser.add_argument("--spark-master", default="local[2]", help="Spark master URL for --engine spark (default local[2])")
    parser.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                        help="a Spark setting for --engine spark, e.g. spark.driver.memory=2g (repeatable)")
    args = _common.parse(parser, argv)
    from mlcycle.config.load import compose
    from mlcycle.core import tables, threads
    from mlcycle.errors import DataError
    from mlcycle.tracking import hygiene, ui
    from mlcycle.tracking.model_io import MODEL_URI_TAG
    from mlcycle.tracking.runs import KIND_PREDICT, TIME_METRIC, root_run

    spark_options = None
    if args.engine == SPARK:
        from mlcycle import spark

        spark.require()  # pyspark and Java, before anything else
        spark_options = (args.spark_master, spark.settings(args.spark_conf))
    cfg = compose(args.overrides)
    _, uri = _common.connect(cfg)
    model_uri = args.model_uri or f"models:/{cfg.registry.model_name}@{cfg.registry.champion_alias}"
    source = tables.resolve_path(args.input)
    output = tables.resolve_path(args.output)
    if output.suffix.lower() not in OUTPUT_SUFFIXES:
        raise DataError(f"--output must end in .csv or .parquet, got {output}")
    if spark_options and output.suffix.lower() == ".csv":
        raise DataError(f"--engine spark writes Parquet (a folder of part files): --output must end in .parquet, got {output}")
    experiment_id = hygiene.open_experiment(uri, cfg.mlflow.experiment_name, cfg.mlflow.artifact_location, "predict")
    started = time.perf_counter()
    with root_run(experiment_id, f"predict-{source.stem}", {MODEL_URI_TAG: model_uri}, kind=KIND_PREDICT) as run:
        # "scoring." prefix: under `mlflow run` the entry point's own parameters (model_uri,
        # input, ...) are already logged on this run with their raw values
        run.log.log_params({"scoring.model_uri": model_uri, "scoring.input": str(source),
                            "scoring.output": str(output), "scoring.on_bad_rows": args.on_bad_rows,
                            "scoring.engine": args.engine})
        if spark_options:
            run.log.log_params({"scoring.spark_master": args.spark_master})
        with threads.limited(cfg.threads_per_fit):
            summary = score_file(run, model_uri, source, output, args.on_bad_rows, spark_options)
        run.log.log_metrics({TIME_METRIC: time.perf_counter() - started})
    print(summary)
    where = ui.browse(uri, ui.run_path(run.experiment_id, run.run_id))
    print(f"scoring run {run.run_id}" + (f"; browse: {where}" if where else ""))
    return 0


def score_file(run, model_uri: str, source: Path, output: Path, on_bad_rows: str,
               spark_options: tuple[str, dict] | None = None) -> str:
    """Read, check, score, write; log counts, dataset and rejected rows on ``run``. With
    ``spark_options`` (master, settings) Spark reads and scores the file (``mlcycle.spark``)."""
    from mlcycle.core import tables
    from mlcycle.core.scoring import InputColumn, check_input, scored_rows
    from mlcycle.errors import DataError
    from mlcycle.tracking.artifacts import log_input_file
    from mlcycle.tracking.model_io import load_model, load_model_payload

    kind = tables.table_format(source)
    frame = None if spark_options else tables.read_table(source)
    loaded, payload = load_model_payload(model_uri) if spark_options else (load_model(model_uri), None)
    if loaded.name:
        run.log.set_tags({"mlcycle.model_name": loaded.name, "mlcycle.model_version": loaded.version})
    if not loaded.inputs:
        raise DataError(f"model {model_uri} has no column signature; cannot check the input columns")
    columns = [InputColumn(n, t, r) for n, t, r in loaded.inputs]
    log_input_file(frame, source, "scoring")
    tmp = output.with_name(f".{output.name}.tmp")  # moved into place once complete
    _remove(tmp)
    output.parent.mkdir(parents=True, exist_ok=True)
    if spark_options is None:
        checked = check_input(frame, columns, str(source))
        header, rows_in, rejected = [str(c) for c in frame.columns], len(frame), checked.rejected
        ignored = _report(run, source, header, columns, rows_in, rejected, on_bad_rows)
        out = scored_rows(loaded.model, frame, checked, loaded.probabilities)
        out.to_csv(tmp, index=False) if output.suffix.lower() == ".csv" else out.to_parquet(tmp, index=False)
    else:
        from mlcycle import spark

        begun = time.perf_counter()
        with spark.session(*spark_options) as session:
            run.log.metric(spark_startup_seconds=time.perf_counter() - begun)
            header, rows_in, rejected = spark.score(session, loaded, payload, columns, source, kind, tmp)
        try:
            ignored = _report(run, source, header, columns, rows_in, rejected, on_bad_rows)
        except DataError:
            _remove(tmp)
            raise
    _publish(tmp, output)
    return _summary(run, source, output, loaded, rows_in, rejected, ignored)


def _report(run, source: Path, header: list[str], columns, rows_in: int, rejected, on_bad_rows: str) -> list[str]:
    """Ignored columns, row counts and the rejected rows on the run (both engines); with
    ``--on-bad-rows fail`` a DataError when any row was rejected. Returns the ignored columns."""
    from mlcycle.core.scoring import describe_rejections
    from mlcycle.errors import DataError
    from mlcycle.tracking.artifacts import log_text

    # Columns the model does not use are ignored by it (as by `mlflow models serve`), kept in
    # the output beside the predictions, and reported.
    ignored = [c for c in header if c not in {col.name for col in columns}]
    if ignored:
        run.log.log_params({"scoring.ignored_columns": ignored})
    bad_rows = int(rejected["row"].nunique())
    run.log.log_metrics({"rows_in": rows_in, "rows_rejected": bad_rows, "rows_scored": rows_in - bad_rows})
    if bad_rows:
        log_text(rejected.to_csv(index=False), "scoring/rejected_rows.csv")
        if on_bad_rows == "fail":
            raise DataError(f"{source}: {bad_rows} row(s) with bad values: {describe_rejections(rejected)} "
                            f"(all of them: artifact scoring/rejected_rows.csv on run {run.run_id})")
    return ignored


def _summary(run, source: Path, output: Path, loaded, rows_in: int, rejected, ignored: list[str]) -> str:
    from mlcycle.core.scoring import describe_rejections

    bad_rows = int(rejected["row"].nunique())
    lines = [f"scored {rows_in - bad_rows} of {rows_in} rows from {source} with {loaded.uri}"
             + (f" (version {loaded.version})" if loaded.version else "") + f" -> {output}"]
    if ignored:
        lines.append(f"ignored {len(ignored)} column(s) the model does not use (kept in the output): {', '.join(ignored)}")
    if bad_rows:
        lines.append(f"rejected {bad_rows} row(s): {describe_rejections(rejected)}")
        lines.append(f"  all rejected rows: artifact scoring/rejected_rows.csv on run {run.run_id}")
    return "\n".join(lines)


def _publish(tmp: Path, output: Path) -> None:
    """Put a finished output in place of whatever ``output`` was (a file, or the folder an
    earlier Spark run wrote)."""
    old = output.with_name(f".{output.name}.old")
    if output.is_dir() or (tmp.is_dir() and output.exists()):
        _remove(old)
        output.rename(old)
    tmp.replace(output)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)

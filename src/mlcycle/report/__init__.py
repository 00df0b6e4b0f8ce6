"""The report card of a pipeline run: one self-contained ``report.html`` on the root run.

* ``collect.py`` reads the run tree back from the tracking store (one function per section);
* ``render.py`` and ``templates/report.html.j2`` turn it into one HTML page (Jinja2);
* ``figures.py`` draws what was not logged as a picture (matplotlib, embedded as data URIs).

``at_end`` is the pipeline's hook: after the root run has ended (FINISHED or FAILED), it
logs the report on it. A report that cannot be written is a warning and the tag
``mlcycle.report_error`` on the root run; it never changes the pipeline's own outcome.
``mlcycle report <run id>`` writes it again.

Heavy imports (mlflow, jinja2, matplotlib) happen inside the functions.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPORT_ARTIFACT = "report.html"
REPORT_ERROR_TAG = "mlcycle.report_error"


def publish(client, root_run_id: str, out: Path | None = None, log_to_run: bool = True) -> str:
    """Build the report of ``root_run_id``; log it on that run and/or write it to ``out``."""
    from mlcycle.report.collect import build

    html = build(client, root_run_id)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
    if log_to_run:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / REPORT_ARTIFACT
            path.write_text(html, encoding="utf-8")
            client.log_artifact(root_run_id, str(path))
        if REPORT_ERROR_TAG in client.get_run(root_run_id).data.tags:
            client.delete_tag(root_run_id, REPORT_ERROR_TAG)
    return html


@dataclass
class ReportHook:
    enabled: bool = True
    root_run_id: str | None = None  # set by the pipeline once the root run exists

    def attach(self) -> None:
        """Log the report on the root run; on any error, warn and tag the run instead."""
        if not (self.enabled and self.root_run_id):
            return
        from mlflow import MlflowClient

        started = time.perf_counter()
        try:
            publish(MlflowClient(), self.root_run_id)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            log.warning("could not write %s for run %s: %s", REPORT_ARTIFACT, self.root_run_id, message)
            try:
                MlflowClient().set_tag(self.root_run_id, REPORT_ERROR_TAG, message[:5000])
            except Exception as tag_exc:
                log.warning("could not tag run %s with %s: %s", self.root_run_id, REPORT_ERROR_TAG, tag_exc)
            return
        log.info("%s logged on run %s in %.1f s", REPORT_ARTIFACT, self.root_run_id, time.perf_counter() - started)


@contextlib.contextmanager
def at_end(enabled: bool = True) -> Iterator[ReportHook]:
    """Write the report when the block ends normally or with an error.

    Put it first in the ``with`` that opens the root run, so the root run has ended (with its
    final status and error tag) before the report reads it. No report after SIGTERM or
    Ctrl-C (BaseException): the process was asked to stop, and ``mlcycle report`` can
    write it later. The block's own exception always propagates unchanged.
    """
    hook = ReportHook(enabled)
    try:
        yield hook
    except Exception:
        hook.attach()
        raise
    hook.attach()

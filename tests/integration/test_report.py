"""The report card: logged on the root run of every pipeline run (also a failed one), its
sections match the stages that ran, its numbers equal the logged ones, it fetches nothing,
and a real browser (Debian's headless Chromium) renders it."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import subprocess
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import mlflow
import pytest
from mlflow import MlflowClient

from mlcycle import cli, pipeline
from mlcycle.core.evaluation import CLASSIFICATION_METRICS
from mlcycle.report import REPORT_ARTIFACT, REPORT_ERROR_TAG, render
from mlcycle.report.render import external_references
from tests.browser import CHROMIUM, CHROMIUM_FLAGS, NO_CHROMIUM
from tests.conftest import TINY, compose, private_store
from tests.integration.runs import CACHED, cache_status

ALL_SECTIONS = ["data", "preprocessing", "features", "tuning", "training", "evaluation", "registry", "lineage", "timings"]


class ReportPage(HTMLParser):
    """What a reader sees: sections in order, and each number with the value it claims to show."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.sections: list[str] = []
        self.numbers: dict[str, dict[str, tuple[float, str]]] = {}  # section -> name -> (value, text)
        self.counts: dict[str, int] = {}
        self.images: list[str] = []
        self.badges: list[tuple[str, str]] = []  # (section, text) of every badge
        self._section = "header"
        self._badge: str | None = None
        self._open: tuple[str, str, float] | None = None  # (tag, name, value) of an open numeric cell
        self._text = ""
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and "data-section" in a:
            self._section = a["data-section"]
            self.sections.append(self._section)
        if tag == "img":
            self.images.append(a.get("src", ""))
        if "badge" in (a.get("class") or "").split():
            self._badge = ""
        if "data-count" in a:
            self._open, self._text = ("td", "count:" + a["data-count"], 0.0), ""
        if tag == "td" and "data-metric" in a:
            self._open, self._text = ("td", a["data-metric"], float(a["data-value"])), ""
        elif "data-metric" in a:  # tiles: value only
            self.numbers.setdefault(self._section, {})[a["data-metric"]] = (float(a["data-value"]), "")

    def handle_data(self, data):
        if self._open:
            self._text += data
        if self._badge is not None:
            self._badge += data

    def handle_endtag(self, tag):
        if self._badge is not None and tag == "span":
            self.badges.append((self._section, self._badge.strip()))
            self._badge = None
        if self._open and tag == self._open[0]:
            _, name, value = self._open
            if name.startswith("count:"):
                self.counts[name[6:]] = int(self._text.strip())
            else:
                self.numbers.setdefault(self._section, {})[name] = (value, self._text.strip())
            self._open = None


def report_of(client: MlflowClient, run_id: str) -> str:
    run = client.get_run(run_id)
    return mlflow.artifacts.load_text(f"{run.info.artifact_uri}/{REPORT_ARTIFACT}")


def stage_runs(client: MlflowClient, root_id: str) -> dict:
    root = client.get_run(root_id)
    runs = client.search_runs([root.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{root_id}'")
    return {r.data.tags["mlcycle.stage"]: r for r in runs}


@pytest.fixture(scope="module")
def full_run(template_store, tmp_path_factory):
    """One full tiny pipeline run in a private store, shared by the read-only tests below."""
    with pytest.MonkeyPatch.context() as mp:
        for uri in private_store(tmp_path_factory.mktemp("report-store"), template_store, mp):
            result = pipeline.run(compose([*TINY, "tune.n_trials=6"]))
            client = MlflowClient(uri)
            yield client, result, report_of(client, result.run_id)


def test_report_is_on_the_root_run_with_a_section_per_stage(full_run):
    client, result, html = full_run
    root = client.get_run(result.run_id)
    assert root.info.status == "FINISHED"
    assert REPORT_ERROR_TAG not in root.data.tags
    assert REPORT_ARTIFACT in {a.path for a in client.list_artifacts(result.run_id)}
    page = ReportPage(html)
    assert page.sections == ALL_SECTIONS
    assert "lr-ecommerce" in html and result.run_id in html
    experiment = root.info.experiment_id
    assert f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{result.run_id}?workflowType=machine_learning" in html
    for stage in stage_runs(client, result.run_id).values():  # lineage: every stage run and its page in the UI
        assert f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{stage.info.run_id}?workflowType=machine_learning" in html


def test_numbers_in_the_report_equal_the_logged_metrics(full_run):
    client, result, html = full_run
    page = ReportPage(html)
    stages = stage_runs(client, result.run_id)

    evaluation = page.numbers["evaluation"]
    logged = {k: v for k, v in stages["evaluate"].data.metrics.items() if k.startswith("test_")}
    # every metric at the decision threshold, and the label metrics at 0.5 beside them
    assert len(logged) == len(CLASSIFICATION_METRICS) + 3
    for name, value in logged.items():
        shown, text = evaluation[name]
        assert shown == value, name
        assert text == f"{value:,.4f}", name
    assert set(logged) <= {k for k in evaluation if k.startswith("test_")}
    threshold = stages["evaluate"].data.metrics["threshold"]
    assert evaluation["threshold"][0] == threshold == stages["train"].data.metrics["threshold"]
    assert page.numbers["training"]["threshold"][0] == threshold
    assert {"test_precision_at_0.5", "test_recall_at_0.5", "test_f1_at_0.5"} <= set(evaluation)

    headline = page.numbers["header"]
    root_metrics = client.get_run(result.run_id).data.metrics
    assert {k: v for k, v in root_metrics.items() if k.startswith(("cv_", "test_"))} == {k: v for k, (v, _) in headline.items()}

    tune = stages["tune"].data.metrics
    assert page.counts == {"COMPLETE": tune["trials_complete"], "PRUNED": tune["trials_pruned"], "FAIL": tune["trials_failed"]}
    assert page.counts["COMPLETE"] == 6
    assert page.numbers["tuning"]["best_cv_roc_auc"][0] == tune["best_cv_roc_auc"] == result.state.cv_score
    assert page.numbers["tuning"]["val_roc_auc"][0] == tune["val_roc_auc"]

    ingest = stages["ingest"].data.metrics
    for split in ("train", "validation", "test"):
        assert page.numbers["data"][f"rows_{split}"][0] == ingest[f"rows_{split}"]
    assert page.numbers["data"]["rows_in"][0] == 600

    pre = stages["preprocess"].data.metrics
    for name in ("duplicates_removed_train", "anomalies_removed", "imputed_cells", "clipped_values", "rows_out"):
        assert page.numbers["preprocessing"][name] == (pre[name], f"{int(pre[name]):,}")

    features = stages["features"].data.metrics
    assert page.numbers["features"]["features_out"][0] == features["features_out"]


def test_report_shows_what_each_stage_logged(full_run):
    client, result, html = full_run
    stages = stage_runs(client, result.run_id)
    # data profile: every input column with its kind, the class balance
    profile = mlflow.artifacts.load_dict(f"{stages['ingest'].info.artifact_uri}/data_profile.json")
    for column in profile["columns"]:
        assert f"<td>{column}</td>" in html
    assert "Class balance" in html
    # best params of the tune run; registry version and aliases
    for key, value in stages["tune"].data.params.items():
        if key.startswith("best."):
            assert f'data-param="{key[5:]}">{value}<' in html
    assert 'id="registered-version">1<' in html and "challenger, champion" in html
    # evaluation plots (4 logged PNGs) + the tune run's optimization history; its importances
    # are the table, not also a plot
    page = ReportPage(html)
    assert len(page.images) == 5
    assert "Optimization history" in html and "drawn from the trial runs" not in html
    assert "Parameter importances" in html


def test_report_is_self_contained(full_run):
    _, _, html = full_run
    assert external_references(html) == []
    # the only addresses are the runs' pages in the MLflow UI, as text (no links out of the page)
    addresses = re.findall(r"https?://[^\s<\"']+", html)
    assert addresses and all(a.startswith("http://127.0.0.1:5000/#/experiments/") for a in addresses)
    assert "file:" not in html
    assert "<script" not in html.lower()
    page = ReportPage(html)
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        image = mpimg.imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert image.shape[0] > 50 and image.shape[1] > 50


def test_a_run_that_failed_in_tune_gets_a_report_up_to_the_error(tiny_cfg):
    cfg = tiny_cfg("+model.classifier.params.dual=true")  # valid alone; every trial's fit raises (lbfgs)
    with pytest.raises(RuntimeError, match="tuning trials failed"):
        pipeline.run(cfg)
    client = MlflowClient()
    [root] = client.search_runs(
        [client.get_experiment_by_name("mlcycle").experiment_id], filter_string="tags.`mlcycle.run_kind` = 'pipeline'"
    )
    assert root.info.status == "FAILED"
    html = report_of(client, root.info.run_id)
    page = ReportPage(html)
    assert page.sections == ["data", "preprocessing", "features", "tuning", "lineage", "timings"]
    assert 'id="run-error"' in html and "Run failed in stage tune" in html
    assert "all 3 tuning trials failed" in html
    assert "Stages not reached: train, evaluate, register" in html
    assert page.counts == {"COMPLETE": 0, "PRUNED": 0, "FAIL": 3}  # counted from the trial runs
    assert "dual=False" in html  # the trials' own error, grouped
    assert "Optimising <b>cv roc_auc</b>" in html  # from the config: the tune run logged no params
    assert page.numbers["data"]["rows_in"][0] == 600
    assert external_references(html) == []


def test_sections_follow_the_configured_stages(tiny_cfg):
    result = pipeline.run(tiny_cfg("data=diabetes", "stages=[ingest,preprocess]"))
    client = MlflowClient()
    html = report_of(client, result.run_id)
    page = ReportPage(html)
    assert page.sections == ["data", "preprocessing", "lineage", "timings"]
    assert "Target distribution" in html and "Class balance" not in html  # a regression target


def test_a_report_failure_never_changes_the_pipeline_outcome(tiny_cfg, monkeypatch, caplog):
    def broken(context):
        raise RuntimeError("template exploded")

    client = MlflowClient()
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, logger="mlcycle.report"):
        patch.setattr(render, "render_html", broken)  # our own renderer, not MLflow
        result = pipeline.run(tiny_cfg("stages=[ingest]"))
        root = client.get_run(result.run_id)
        assert root.info.status == "FINISHED"
        assert root.data.tags[REPORT_ERROR_TAG] == "RuntimeError: template exploded"
        assert REPORT_ARTIFACT not in {a.path for a in client.list_artifacts(result.run_id)}
        assert "could not write report.html" in caplog.text

        # a failing pipeline keeps its own error, not the report's
        with pytest.raises(Exception, match="not found") as failure:
            pipeline.run(tiny_cfg("data=csv", "data.path=/nonexistent/sessions.csv", "data.target=purchased", "stages=[ingest]"))
        assert "template exploded" not in str(failure.value)
        [failed] = client.search_runs([root.info.experiment_id], filter_string="attributes.status = 'FAILED' and tags.`mlcycle.run_kind` = 'pipeline'")
        assert "not found" in failed.data.tags["mlcycle.error"]
        assert failed.data.tags[REPORT_ERROR_TAG] == "RuntimeError: template exploded"

    # regenerating after the fix logs the report and clears the error tag
    assert cli.main(["report", result.run_id]) == 0
    root = client.get_run(result.run_id)
    assert REPORT_ERROR_TAG not in root.data.tags
    assert ReportPage(report_of(client, result.run_id)).sections == ["data", "lineage", "timings"]


def test_report_can_be_disabled(tiny_cfg):
    result = pipeline.run(tiny_cfg("stages=[ingest]", "report.enabled=false"))
    assert REPORT_ARTIFACT not in {a.path for a in MlflowClient().list_artifacts(result.run_id)}


def test_cli_rewrites_the_report_from_any_run_of_the_tree(full_run, tmp_path, monkeypatch, capsys):
    client, result, html = full_run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)
    tune_id = stage_runs(client, result.run_id)["tune"].info.run_id
    out = tmp_path / "card.html"
    assert cli.main(["report", tune_id, "--out", str(out), "--no-log"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    again = out.read_text()
    assert ReportPage(again).sections == ALL_SECTIONS
    assert ReportPage(again).numbers["evaluation"] == ReportPage(html).numbers["evaluation"]

    assert cli.main(["report", "0" * 32, "--out", str(out), "--no-log"]) == 2
    assert capsys.readouterr().err.strip() == f"error: run '{'0' * 32}' not found in {client.tracking_uri}"


# Added to a COPY of the report for the browser check only: counts decoded images and every
# resource the page fetched (Resource Timing), and catches script errors.
PROBE = """<script>
window.addEventListener("error", e => document.documentElement.setAttribute("data-js-error", String(e.message)));
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.setAttribute("data-probe", JSON.stringify({
    images: images.length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).length,
    fetched: performance.getEntriesByType("resource").map(e => e.name),
    metricRows: document.querySelectorAll("#metrics-table td[data-metric]").length,
  }));
});
</script>"""


def chromium_dom(page: Path, tmp_path: Path) -> tuple[dict, str, str]:
    proc = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', proc.stdout)
    assert found, "the page never finished loading"
    return json.loads(unescape(found.group(1))), proc.stdout, proc.stderr


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_chromium_renders_the_report_without_errors_or_fetches(full_run, tmp_path):
    _, _, html = full_run
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    probe, dom, log = chromium_dom(page, tmp_path)
    assert probe == {"images": 5, "broken": 0, "fetched": [], "metricRows": len(CLASSIFICATION_METRICS)}
    assert not re.search(r"<html[^>]*data-js-error", dom)  # no script error while loading
    assert "CONSOLE" not in log  # nothing written to the browser console
    assert ReportPage(dom).sections == ALL_SECTIONS

    # the same checks do see a page that fetches and has a script error (so they can fail)
    bad = tmp_path / "bad.html"
    broken = '<img src="http://127.0.0.1:9/x.png">' + PROBE + "<script>undefinedFunction()</script></body>"
    bad.write_text(html.replace("</body>", broken), encoding="utf-8")
    probe, dom, log = chromium_dom(bad, tmp_path)
    assert probe["fetched"] == ["http://127.0.0.1:9/x.png"] and probe["broken"] == 1
    assert re.search(r"<html[^>]*data-js-error", dom) and "CONSOLE" in log

    # and it paints: a screenshot of the top of the page is not blank
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, timeout=180, check=True,
    )
    image = mpimg.imread(shot)
    assert image.shape[:2] == (1600, 1200)
    assert image.std() > 0.05


def test_report_reads_what_other_features_add_to_the_runs(full_run):
    """Values that newer features add to the register and tune runs are shown without changes
    here: under their own names, logged importances instead of estimated ones, cache hits."""
    from mlcycle.report.collect import collect
    from mlcycle.report.render import render_html

    client, result, _ = full_run
    stages = stage_runs(client, result.run_id)
    register, tune = stages["register"].info.run_id, stages["tune"].info.run_id
    client.set_tag(register, "mlcycle.canary", "rolled out to 5 %")
    client.log_metric(register, "canary_error_rate", 0.02)
    client.log_metric(tune, "importance.C", 0.75)
    client.log_metric(tune, "importance.class_weight", 0.25)

    # a later pipeline whose ingest was a cache hit: the new stage run holds only the tags
    root = client.create_run(client.get_run(result.run_id).info.experiment_id, tags={"mlcycle.run_kind": "pipeline"})
    hit = client.create_run(
        root.info.experiment_id, run_name="ingest",
        tags={"mlflow.parentRunId": root.info.run_id, "mlcycle.stage": "ingest", "mlcycle.run_kind": "stage",
              "mlcycle.cache": "hit", "mlcycle.cache_source_run": stages["ingest"].info.run_id},
    )
    client.log_metric(hit.info.run_id, "duration_seconds", 12.5)  # the name stage times had before
    for run in (hit, root):
        client.set_terminated(run.info.run_id)

    html = render_html(collect(client, result.run_id))
    assert "<th>mlcycle.canary</th><td class=\"mono\">rolled out to 5 %</td>" in html
    assert "<th>canary_error_rate</th>" in html
    assert "estimated for this report" not in html  # the logged importances are used
    assert "<td>C</td><td class=\"num\">0.750</td>" in html

    cached = render_html(collect(client, root.info.run_id))
    page = ReportPage(cached)
    assert page.sections == ["data", "lineage", "timings"]
    assert "cache hit: reused run " + stages["ingest"].info.run_id in cached
    assert page.numbers["data"]["rows_in"][0] == 600  # read from the reused run
    assert collect(client, root.info.run_id)["sections"]["timings"]["rows"][0]["seconds"] == 12.5
    assert "duration_seconds" not in cached  # a time, not one of the stage's counts


@pytest.fixture(scope="module")
def three_runs(template_store, tmp_path_factory):
    """A cold run, the same run again (every stage served from the step cache), and one with
    another seed (a new version, gated against the first as champion)."""
    with pytest.MonkeyPatch.context() as mp:
        for uri in private_store(tmp_path_factory.mktemp("report-cache"), template_store, mp):
            same = [*TINY, *CACHED]
            runs = [pipeline.run(compose(same)) for _ in range(2)] + [pipeline.run(compose([*same, "seed=3"]))]
            yield MlflowClient(uri), *runs


def test_only_a_cache_hit_shows_a_cache_hit_badge(three_runs):
    client, cold, rerun, _ = three_runs
    assert set(cache_status(client, cold.run_id).values()) == {"miss"}
    assert set(cache_status(client, rerun.run_id).values()) == {"hit"}
    stage_sections = ["data", "preprocessing", "features", "tuning", "training", "evaluation", "registry"]

    cold_page = ReportPage(report_of(client, cold.run_id))
    assert [b for b in cold_page.badges if b[1].startswith("cache hit")] == []
    assert cold_page.sections == ALL_SECTIONS

    html = report_of(client, rerun.run_id)
    hits = [b for b in ReportPage(html).badges if b[1].startswith("cache hit")]
    assert [section for section, _ in hits] == stage_sections  # seven: one per stage
    sources = {s: r.data.tags["mlcycle.cache_source_run"] for s, r in stage_runs(client, rerun.run_id).items()}
    assert {text.removeprefix("cache hit: reused run ") for _, text in hits} == set(sources.values())
    assert set(sources.values()) == {r.info.run_id for r in stage_runs(client, cold.run_id).values()}


def test_the_registry_section_reads_as_words_and_a_table_of_gate_checks(three_runs):
    client, _, _, other = three_runs
    html = report_of(client, other.run_id)
    registry = html[html.index('data-section="registry"'):html.index('data-section="lineage"')]
    version = client.get_model_version("mlcycle-ecommerce", other.state.registered_version)
    decision = json.loads(version.tags["mlcycle.gate.report"])
    assert decision["champion_version"] == "1" and decision["checks"]

    assert "mlcycle." not in registry  # no raw tag names ...
    assert '{"' not in registry and "&#34;" not in registry  # ... and no JSON
    assert "compared with champion version <b>1</b>" in registry
    assert f"<th>made by pipeline run</th><td class=\"mono\">{other.run_id}</td>" in registry
    assert "<th>model family</th><td class=\"mono\">logistic_regression</td>" in registry
    from mlcycle.report.registry import CHECK_LABELS

    rows = re.findall(r'<tr data-check="([^"]+)"><td>([^<]+)</td><td>[^<]+</td><td class="num">([^<]+)</td>'
                      r'<td class="num">([^<]+)</td><td class="num">([^<]+)</td>\s*<td><span class="badge (\w+)">', registry)
    assert [(m, kind, cand, champ, bound, result) for m, kind, cand, champ, bound, result in rows] == [
        (c["metric"], CHECK_LABELS[c["kind"]], render.fmt_number(c["candidate"]), render.fmt_number(c["champion"]),
         render.fmt_number(c["bound"]), "passed" if c["passed"] else "failed")
        for c in decision["checks"]
    ]
    verdict = version.tags["mlcycle.gate"]
    assert f'Promotion gate <span class="badge {verdict}">{verdict}</span>' in registry

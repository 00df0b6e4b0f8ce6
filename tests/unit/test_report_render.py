"""The report's pure parts: the self-containment check, escaping, number formatting, figures."""

from __future__ import annotations

import base64
import io

import matplotlib.image as mpimg
import pytest

from mlcycle.core.tuning import history_figure
from mlcycle.core.tuning.figures import best_so_far
from mlcycle.report import figures
from mlcycle.report.render import (
    NotSelfContained,
    check_self_contained,
    external_references,
    fmt_number,
    render_html,
)


@pytest.mark.parametrize(
    "html",
    [
        '<img src="https://example.com/a.png">',
        '<img src="//cdn.example.com/a.png">',
        '<img src="a.png">',
        '<a href="http://127.0.0.1:5000/#/runs/1">run</a>',
        '<link rel="stylesheet" href="style.css">',
        "<script>fetch('x')</script>",
        '<style>body { background: url("https://x/y.png") }</style>',
        "<style>@import 'other.css';</style>",
        '<div style="background-image:url(x.png)"></div>',
        '<iframe srcdoc="x"></iframe>',
        '<img srcset="a.png 2x" src="data:image/png;base64,AAAA">',
        '<meta http-equiv="refresh" content="0; url=http://x">',
    ],
)
def test_anything_that_would_fetch_is_found(html):
    assert external_references(html)
    with pytest.raises(NotSelfContained):
        check_self_contained(html)


def test_data_uris_anchors_and_urls_in_text_are_fine():
    html = (
        '<style>.x { background: url("data:image/png;base64,AAAA") }</style>'
        '<a href="#tuning">tuning</a><img src="data:image/png;base64,AAAA" alt="plot">'
        "<p>error: could not reach http://127.0.0.1:5000 (src=x href=y)</p>"
    )
    assert external_references(html) == []


def _context(**summary):
    base = {"run_name": "r", "run_id": "0" * 32, "status": "FAILED", "experiment_id": "1",
            "start_time": 1_700_000_000_000, "end_time": None, "seconds": None, "headline": []}
    return {"summary": base | summary, "sections": {}, "toc": [], "generated_at": 1_700_000_000_000, "mlcycle_version": "0"}


def test_logged_text_is_escaped_not_executed():
    html = render_html(_context(error='ValueError: <script>alert(1)</script> <img src="http://evil/x">'))
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert external_references(html) == []


def test_a_page_with_no_sections_still_renders_the_header():
    html = render_html(_context(error="RuntimeError: boom", failed_stage="ingest", stages_not_run=["preprocess"]))
    assert 'id="run-error"' in html and "in stage ingest" in html and "RuntimeError: boom" in html
    assert "Stages not reached: preprocess" in html
    assert "data-section=" not in html


def test_a_section_that_could_not_be_read_says_so():
    stage = {"name": "ingest", "run_id": "1" * 32, "status": "FAILED", "error": "DataError: no file", "seconds": 0.1, "cache": {}}
    context = _context()
    context["sections"] = {"data": {"problem": "KeyError: 'splits'", "stage": stage}}
    html = render_html(context)
    assert 'data-section="data"' in html
    assert "could not be read completely: KeyError: &#39;splits&#39;" in html
    assert "This stage failed: DataError: no file" in html


@pytest.mark.parametrize(
    ("value", "text"),
    [(600.0, "600"), (20000, "20,000"), (0.71254, "0.7125"), (0.0000123, "1.230e-05"), (None, "–"), ("abc", "abc")],
)
def test_numbers_are_formatted_for_reading(value, text):
    assert fmt_number(value) == text


def test_best_so_far_follows_the_direction():
    assert best_so_far([0.5, 0.7, 0.6, 0.8], greater=True) == [0.5, 0.7, 0.7, 0.8]
    assert best_so_far([3.0, 1.0, 2.0], greater=False) == [3.0, 1.0, 1.0]


@pytest.mark.parametrize("n_trials", [2, 3, 5, 40])
def test_the_optimization_history_counts_trials_in_whole_numbers(n_trials):
    """The one history drawing (logged by the tune stage, drawn by the report from trial
    runs): its x ticks are trial numbers, so whole; matplotlib's default put ticks at 0.5,
    1.5, ... for a few trials."""
    fig = history_figure(list(range(n_trials)), [0.5 + 0.01 * i for i in range(n_trials)], [True] * n_trials, "roc_auc", True)
    fig.canvas.draw()
    ax = fig.axes[0]
    low, high = ax.get_xlim()
    shown = [t for t in ax.get_xticks() if low <= t <= high]
    assert len(shown) >= 2 and all(float(t).is_integer() for t in shown), shown


def test_optimization_history_is_an_embedded_png():
    trials = [figures.Trial(i, figures.COMPLETE, v) for i, v in enumerate([0.6, 0.7, 0.65])]
    trials.append(figures.Trial(3, figures.PRUNED, 0.5))
    trials.append(figures.Trial(4, figures.FAIL, None, error="boom"))
    uri = figures.optimization_history(trials, "roc_auc", greater=True)
    assert uri.startswith("data:image/png;base64,")
    image = mpimg.imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])), format="png")
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert figures.optimization_history([figures.Trial(0, figures.FAIL, None)], "roc_auc", True) is None


def test_estimated_importances_single_out_the_parameter_that_matters():
    # value depends on "a" only; "b" is noise; "kind" is a categorical that does not matter
    trials = [
        figures.Trial(i, figures.COMPLETE, (i % 7) / 7, params={"a": str(i % 7), "b": str((i * 13) % 5), "kind": "xy"[i % 2]})
        for i in range(30)
    ]
    importances = figures.estimate_importances(trials, greater=True)
    assert set(importances) == {"a", "b", "kind"}
    assert max(importances, key=importances.get) == "a"
    assert importances["a"] > 0.8
    assert figures.estimate_importances(trials[:3], greater=True) == {}  # too few trials

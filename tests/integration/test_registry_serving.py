"""`mlcycle serve` (which verifies the champion's files, then runs `mlflow models serve` on
them) on 127.0.0.1: round trips equal to in-process predictions for JSON (split and records)
and CSV requests, probabilities on request, bad requests answered 4xx without echoing the
request while the server stays up, and the README's own curl example."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlcycle import pipeline
from tests.conftest import stop_group, subprocess_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes | str, content_type: str = "application/json") -> tuple[int, dict]:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        text = err.read().decode()
        try:
            return err.code, json.loads(text)
        except json.JSONDecodeError:
            return err.code, {"message": text}


def as_request(frame) -> str:
    split = json.loads(frame.to_json(orient="split", date_format="iso", index=False))
    return json.dumps({"dataframe_split": {"columns": split["columns"], "data": split["data"]}})


@contextlib.contextmanager
def serving(store: str, tmp_path: Path, *overrides: str) -> Iterator[str]:
    """`mlcycle serve` in a subprocess; yields its base URL, stops it afterwards."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlcycle", "serve", "--port", str(port), *overrides],
            env=subprocess_env(store, tmp_path), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not answer /ping in 120 s"
            time.sleep(0.5)
        assert "verified" in log.read_text().splitlines()[0]
        yield base
    finally:
        stop_group(proc)


@pytest.fixture
def server(tiny_cfg, store, tmp_path):
    result = pipeline.run(tiny_cfg("evaluate.plots=false"))
    with serving(store, tmp_path) as base:
        yield base, result


def test_serving_round_trip_and_bad_requests(server):
    base, result = server
    state = result.state
    X = state.splits.test[list(state.schema.features)]
    url = f"{base}/invocations"

    status, body = post(url, as_request(X))
    assert status == 200
    np.testing.assert_array_equal(np.asarray(body["predictions"]), state.model.predict(X))

    status, body = post(url, as_request(X.drop(columns=["price"])))
    assert status == 400 and "missing required column(s) price" in body["message"]
    # every column is required, also those the example happened to have missing values in
    status, body = post(url, as_request(X.drop(columns=["device"])))
    assert status == 400 and "missing required column(s) device" in body["message"]

    wrong = X.head(3).astype(object)
    wrong.loc[0, "price"] = "abc"
    status, body = post(url, as_request(wrong))
    assert status == 400 and "row 1: column 'price' is not a valid double" in body["message"]
    # the answer names the row and the column, and does not echo the request's data back
    assert "abc" not in json.dumps(body) and str(wrong.loc[1, "device"]) not in body["message"]

    status, body = post(url, '{"dataframe_split": {"columns": ["price"')
    assert status == 400 and "valid JSON" in body["message"]

    status, body = post(url, "price\n1.0\n", content_type="text/plain")
    assert status == 415 and "only supports the following content types" in body["message"]

    # missing values are not errors: the model imputes them
    gaps = X.head(3).copy()
    gaps["price"] = np.nan
    gaps["device"] = None
    status, body = post(url, as_request(gaps))
    assert status == 200
    np.testing.assert_array_equal(np.asarray(body["predictions"]), state.model.predict(gaps))

    status, body = post(url, as_request(X.head(5)))  # still up after the bad requests
    assert status == 200 and len(body["predictions"]) == 5


def test_serving_takes_real_exports_as_json_and_csv(tiny_cfg, store, tmp_path):
    """Integer, nullable integer, boolean, text and date columns, through every request format."""
    import pandas as pd

    from tests.integration.test_deployment_contract import export

    path, target = export("breast_cancer", "csv", tmp_path)
    result = pipeline.run(tiny_cfg("data=csv", f"data.path={path}", f"data.target={target}", "data.name=served",
                                   "evaluate.plots=false"))
    raw = pd.read_csv(path).drop(columns=[target]).head(20)
    expected = result.state.model.predict(raw)
    with serving(store, tmp_path, "models:/mlcycle-served@champion") as base:  # the URI as first argument
        url = f"{base}/invocations"
        records = json.loads(raw.to_json(orient="records"))
        records[0]["visits"] = records[1]["visit_date"] = records[2]["smoker"] = None  # missing: imputed
        answers = {
            "split": post(url, as_request(raw)),
            "records": post(url, json.dumps({"dataframe_records": records})),
            "csv": post(url, raw.to_csv(index=False), "text/csv"),
            "csv with the index column": post(url, raw.to_csv(), "text/csv"),  # an extra column: ignored
        }
        for kind, (status, body) in answers.items():
            assert status == 200, (kind, body)
            got = np.asarray(body["predictions"])
            if kind == "records":
                assert len(got) == len(raw) and (got[3:] == expected[3:]).all()
            else:
                np.testing.assert_array_equal(got, expected, err_msg=kind)

        status, body = post(url, json.dumps({"dataframe_records": records[3:6], "params": {"output": "probabilities"}}))
        assert status == 200
        proba = result.state.model.predict_proba(raw.iloc[3:6])
        classes = result.state.model.classes_
        for row, want in zip(body["predictions"], proba, strict=True):
            assert [row[f"probability_{c}"] for c in classes] == pytest.approx(list(want))

        records[4]["year"] = "next year"
        status, body = post(url, json.dumps({"dataframe_records": records}))
        assert status == 400 and body["message"] == (
            "1 row(s) with a value that does not fit its column: row 5: column 'year' is not a valid integer"
        )


def test_the_readme_curl_example_answers_probabilities(server):
    """The README's serving example, run as written against the served champion."""
    base, _ = server
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"<!-- tested: serving curl -->\n```bash\n(.*?)```", readme, re.S).group(1)
    assert "http://127.0.0.1:5001/invocations" in block
    done = subprocess.run(["bash", "-c", block.replace("http://127.0.0.1:5001", base)], capture_output=True,
                          text=True, timeout=60, check=True)
    answer = json.loads(done.stdout)["predictions"]
    assert len(answer) == 2 and all(set(row) == {"prediction", "probability_0", "probability_1"} for row in answer)
    assert all(abs(row["probability_0"] + row["probability_1"] - 1) < 1e-9 for row in answer)

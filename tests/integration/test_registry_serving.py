"""`mlflow models serve` on the registered champion: a real server on 127.0.0.1, round trip
equal to in-process predictions, and bad requests answered 4xx while the server stays up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from mlcycle import pipeline
from tests.conftest import subprocess_env
from tests.integration.registry_helpers import NAME


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


@pytest.fixture
def server(tiny_cfg, store, tmp_path):
    result = pipeline.run(tiny_cfg("evaluate.plots=false"))
    port = free_port()
    with open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
            env=subprocess_env(store, tmp_path), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not answer /ping in 120 s"
            time.sleep(0.5)
        yield base, result
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


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

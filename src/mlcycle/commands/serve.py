"""``mlcycle serve``: verify a registered model, then serve it with ``mlflow models serve``.

The model's files are downloaded into a temporary folder and checked against the manifest
recorded when the version was registered (a changed, added or missing file refuses to
serve, before any of its code can run); MLflow's scoring server then serves that verified
copy, on 127.0.0.1 only, on a port that leaves ``make ui``'s 5000 free. Plain
``mlflow models serve -m models:/...`` verifies nothing (docs/guide.md, "Serving").
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mlcycle.cli import command
from mlcycle.commands import _common

DEFAULT_PORT = 5001


@command
def main(argv: list[str]) -> int:
    parser = _common.parser("serve", __doc__)
    parser.add_argument("--model-uri", help="or as the first argument; default: models:/<registry.model_name>@<champion alias>")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT} (make ui uses 5000)")
    args = _common.parse(parser, argv)
    # `mlcycle serve models:/name@alias`: a model URI may also come first, where overrides go
    uris = [a for a in args.overrides if "=" not in a]
    if len(uris) > 1 or (uris and args.model_uri):
        parser.error(f"one model URI, got {', '.join(filter(None, [args.model_uri, *uris]))}")
    from mlcycle.config.load import compose
    from mlcycle.core import threads
    from mlcycle.tracking.model_io import fetch

    cfg = compose([a for a in args.overrides if "=" in a])
    _common.connect(cfg)
    model_uri = args.model_uri or next(iter(uris), None) or f"models:/{cfg.registry.model_name}@{cfg.registry.champion_alias}"
    bin_dir = Path(sys.executable).parent  # mlflow and uvicorn of this environment
    with tempfile.TemporaryDirectory(prefix="mlcycle-serve-") as tmp:
        local, version = fetch(model_uri, Path(tmp))
        what = f"{version.name} version {version.version}, verified" if version is not None else "not a registered version: unverified"
        print(f"mlcycle serve: {model_uri} ({what}) on http://127.0.0.1:{args.port}/invocations", flush=True)
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        threads.preset(cfg.threads_per_fit, env)  # each request's predict: threads_per_fit threads
        cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(local), "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(args.port)]
        try:
            return subprocess.call(cmd, env=env)
        except KeyboardInterrupt:
            return 130

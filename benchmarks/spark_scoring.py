"""Batch scoring: the pandas engine against Spark (local[2]) on 100k, 1M and 5M rows.

Each measurement is one real ``mlcycle predict`` process (``--engine pandas`` or ``--engine
spark``), both run by the Spark environment's interpreter (the same mlcycle code and
libraries), scoring a CSV made by ``mlcycle generate-data --rows N`` with a registered
HistGradientBoosting champion trained here first. Engines alternate within each size (the
order flips from one size to the next).

Memory is sampled every 0.2 s from /proc (VmRSS) over the command's process tree: the
driver (the ``mlcycle`` Python process itself), Spark's JVM (the ``java`` child the driver
starts; in local mode it also runs the executor), Spark's Python workers (``pyspark.daemon``
and its forks), and the sum of all of them at one instant. Peaks are the highest samples.
Wall time is the whole command (start-up, model load, Spark session, read, score, write,
tracking); rows/s = rows / wall. The Spark run's own session start-up is the
``spark_startup_seconds`` metric of its predict run.

    .venv/bin/python benchmarks/spark_scoring.py --spark-venv .venv-spark
    .venv/bin/python benchmarks/spark_scoring.py --sizes 100000 --out /tmp/bench.jsonl   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, temp_folder  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE / 2**20
    except (OSError, IndexError, ValueError):
        return 0.0


def tree(root: int) -> dict[int, str]:
    """pid -> role for ``root`` and its descendants: driver, jvm or worker."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        parents[int(entry)], names[int(entry)] = int(rest[1]), name
    roles, frontier = {root: "driver"}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in roles:
                roles[pid] = "jvm" if names[pid] == "java" else "worker"
                frontier.append(pid)
    return roles


class Sampler(threading.Thread):
    """Peak RSS per role and of the whole tree, sampled every ``every`` seconds."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.every, self.done = pid, every, threading.Event()
        self.peak = {"driver": 0.0, "jvm": 0.0, "worker": 0.0, "total": 0.0}

    def run(self) -> None:
        while not self.done.is_set():
            by_role = {"driver": 0.0, "jvm": 0.0, "worker": 0.0}
            for pid, role in tree(self.pid).items():
                by_role[role] += rss_mb(pid)
            for role, mb in by_role.items():
                self.peak[role] = max(self.peak[role], mb)
            self.peak["total"] = max(self.peak["total"], sum(by_role.values()))
            self.done.wait(self.every)


def run(cmd: list[str], env: dict, timeout: float) -> dict:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = Sampler(proc.pid)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        code = "timeout"
    wall = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    return {"exit": code, "wall_s": wall, "peak_mb": sampler.peak, "stdout": out[-400:], "stderr": err[-800:]}


def startup_seconds(store: str, output: Path) -> float | None:
    """The Spark session start-up the predict run logged (spark_startup_seconds)."""
    from mlflow import MlflowClient

    client = MlflowClient(store)
    exp = client.get_experiment_by_name("mlcycle")
    for run_ in client.search_runs([exp.experiment_id], f"params.`scoring.output` = '{output}'",
                                   order_by=["attributes.start_time DESC"], max_results=1):
        return run_.data.metrics.get("spark_startup_seconds")
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spark-venv", default=str(ROOT / ".venv-spark"))
    parser.add_argument("--sizes", default="100000,1000000,5000000")
    parser.add_argument("--timeout", type=float, default=1200, help="per run; a size that times out ends that engine")
    parser.add_argument("--out", type=Path, help="raw results, one JSON object per line")
    args = parser.parse_args()
    python = str(Path(args.spark_venv).resolve() / "bin" / "python")
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} cores; sizes {sizes}", flush=True)
    with temp_folder() as tmp:
        folder = Path(tmp)
        store = f"sqlite:///{folder / 'mlflow.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYSPARK_"))}
        env.update(MLFLOW_TRACKING_URI=store, MLCYCLE_ROOT=str(folder), PYTHONPATH=str(ROOT / "src"),
                   MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT="true", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
        mlcycle = [python, "-m", "mlcycle"]
        train = run([*mlcycle, "train", "data.n_rows=20000", "model=hist_gradient_boosting", "tune.n_trials=3",
                     "tune.cv_folds=2", "evaluate.plots=false", "report.enabled=false", f"hydra.run.dir={folder}/hydra"],
                    env, 1800)
        assert train["exit"] == 0, train["stderr"]
        print(f"trained the champion in {train['wall_s']:.0f} s", flush=True)
        results, stopped = [], set()
        for i, rows in enumerate(sizes):
            data = folder / f"sessions-{rows}.csv"
            made = run([*mlcycle, "generate-data", "--rows", str(rows), "--seed", "7", "--out", str(data)], env, 1800)
            assert made["exit"] == 0, made["stderr"]
            size_mb = data.stat().st_size / 2**20
            engines = ["pandas", "spark"] if i % 2 == 0 else ["spark", "pandas"]
            for engine in engines:
                if engine in stopped:
                    continue
                output = folder / f"scored-{engine}-{rows}.parquet"
                result = run([*mlcycle, "predict", "--engine", engine, "--input", str(data), "--output", str(output)],
                             env, args.timeout)
                result.update(engine=engine, rows=rows, file_mb=round(size_mb, 1), load=os.getloadavg()[0],
                              rows_per_s=rows / result["wall_s"] if result["exit"] == 0 else None,
                              spark_startup_s=startup_seconds(store, output) if engine == "spark" else None)
                results.append(result)
                peak = result["peak_mb"]
                print(f"{rows:>9,} rows ({size_mb:,.0f} MB CSV)  {engine:<6}  exit {result['exit']}  "
                      f"wall {result['wall_s']:7.1f} s  {result['rows_per_s'] or 0:9,.0f} rows/s  peak RSS MB: "
                      f"driver {peak['driver']:6.0f}  jvm {peak['jvm']:6.0f}  workers {peak['worker']:6.0f}  "
                      f"total {peak['total']:6.0f}" + (f"  (session start {result['spark_startup_s']:.1f} s)"
                                                        if result["spark_startup_s"] else "")
                      + f"  load {result['load']:.1f}", flush=True)
                if result["exit"] != 0:
                    print(f"  {engine} stopped: {result['stderr'].strip().splitlines()[-1:] or result['exit']}", flush=True)
                    stopped.add(engine)
                shutil.rmtree(output, ignore_errors=True) if output.is_dir() else output.unlink(missing_ok=True)
            data.unlink()
    print(f"load average at end: {os.getloadavg()}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("".join(json.dumps(r) + "\n" for r in results))


if __name__ == "__main__":
    main()

"""Benchmark 4: the full pipeline at 100,000 and 1,000,000 rows, 10 trials each.

Runs ``mlcycle train`` in a subprocess per size against a fresh sqlite store and reports
wall time and peak memory: the largest resident set of the pipeline process (getrusage)
and of its whole process tree (sampled every 0.2 s). Target: time grows no worse than
linearly with rows; 1,000,000 rows fit in 4 GiB.

    .venv/bin/python benchmarks/pipeline_scale.py                 # 100k and 1M rows
    .venv/bin/python benchmarks/pipeline_scale.py --rows 20000 100000 --trials 3
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import threading
import time

from _common import ROOT, temp_folder


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            with open(f"/proc/{current}/statm") as fh:
                total += int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{current}/task/{current}/children") as fh:
                stack.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return total


def run_once(rows: int, trials: int, extra: list[str]) -> dict:
    with temp_folder() as tmp:
        env = dict(os.environ, MLCYCLE_ROOT=tmp, MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db")
        command = [
            sys.executable, "-m", "mlcycle", "train", f"data.n_rows={rows}", f"tune.n_trials={trials}",
            "tune.progress_bar=false", *extra,
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        peak = [0]

        def sample() -> None:
            while proc.poll() is None:
                peak[0] = max(peak[0], tree_rss(proc.pid))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        output = proc.communicate()[0]
        wall = time.perf_counter() - started
        sampler.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"pipeline failed at {rows} rows:\n{output[-3000:]}")
        return {
            "rows": rows,
            "wall_s": wall,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "maxrss_gib": after.ru_maxrss * 1024 / 2**30,  # ru_maxrss is KiB on Linux
            "tree_gib": peak[0] / 2**30,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides")
    args = parser.parse_args()
    results = []
    for rows in args.rows:
        result = run_once(rows, args.trials, args.overrides)
        results.append(result)
        print(
            f"{rows:>9,} rows: wall {result['wall_s']:7.1f} s  cpu {result['cpu_s']:7.1f} s  "
            f"peak RSS {result['maxrss_gib']:.2f} GiB (process), {result['tree_gib']:.2f} GiB (tree)",
            flush=True,
        )
    base = results[0]
    for result in results[1:]:
        row_ratio = result["rows"] / base["rows"]
        print(
            f"x{row_ratio:.0f} rows -> x{result['wall_s'] / base['wall_s']:.2f} wall time "
            f"({'no worse than linear' if result['wall_s'] / base['wall_s'] <= row_ratio else 'WORSE than linear'})"
        )
    largest = max(results, key=lambda r: r["rows"])
    print(f"peak RSS at {largest['rows']:,} rows: {max(largest['maxrss_gib'], largest['tree_gib']):.2f} GiB (target <= 4 GiB)")


if __name__ == "__main__":
    main()

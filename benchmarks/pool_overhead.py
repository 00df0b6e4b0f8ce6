"""Pool the repetitions of several tuning_overhead.py outputs into one ratio per variant.

One run of 3-5 alternating repetitions moves by +-5 % on this machine (identical code gave
HGB-over-HTTP medians from 1.02 to 1.09). Every repetition runs its variants back to back,
so each gives a paired ratio (variant / bare of the same repetition); pooling the saved
outputs of several runs gives the median over all of them.

    .venv/bin/python benchmarks/tuning_overhead.py --reps 5 | tee run1.txt   # ... run2.txt ...
    .venv/bin/python benchmarks/pool_overhead.py run1.txt run2.txt
    .venv/bin/python benchmarks/pool_overhead.py benchmarks/results/2026-11-27-overhead/[1-4]-*.txt
"""

from __future__ import annotations

import re
import statistics
import sys
from collections import defaultdict

LINE = re.compile(r"\s+(\S+) rep (\d+) (\S+)\s+study\s+([\d.]+) s")


def main(paths: list[str]) -> None:
    pooled: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)  # (model, variant) -> (time, bare)
    for path in paths:
        reps: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
        with open(path) as f:
            for line in f:
                if m := LINE.match(line):
                    reps[(m[1], int(m[2]))][m[3]] = float(m[4])
        for (model, _), variants in reps.items():
            for variant, seconds in variants.items():
                if variant != "bare" and "bare" in variants:
                    pooled[(model, variant)].append((seconds, variants["bare"]))
    print(f"{'model':<24} {'variant':<12} {'reps':>4} {'median paired ratio':>20} {'ratio of medians':>17} {'paired range':>14}")
    for (model, variant), pairs in sorted(pooled.items()):
        paired = sorted(t / b for t, b in pairs)
        of_medians = statistics.median(t for t, _ in pairs) / statistics.median(b for _, b in pairs)
        print(f"{model:<24} {variant:<12} {len(pairs):>4} {statistics.median(paired):>20.3f} {of_medians:>17.3f} "
              f"{paired[0]:>6.3f}-{paired[-1]:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])

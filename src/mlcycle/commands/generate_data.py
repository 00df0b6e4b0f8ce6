"""``mlcycle generate-data``: write the default e-commerce dataset to CSV (or Parquet)."""

from __future__ import annotations

from pathlib import Path

from mlcycle.cli import command
from mlcycle.commands import _common


@command
def main(argv: list[str]) -> int:
    parser = _common.parser("generate-data", __doc__)
    parser.add_argument("--rows", type=int, default=20_000, help="number of sessions (default 20000)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--drift", type=float, default=0.0, help="0 = reference distribution")
    parser.add_argument("--out", type=Path, default=None, help="output file (.csv or .parquet); default data/ecommerce.csv")
    args = parser.parse_args(argv)

    from mlcycle.config.load import project_root
    from mlcycle.core.datasets import generate_sessions

    out = args.out or project_root() / "data" / "ecommerce.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame = generate_sessions(args.rows, args.seed, args.drift)
    if out.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    print(f"wrote {len(frame)} rows x {frame.shape[1]} columns to {out}")
    return 0

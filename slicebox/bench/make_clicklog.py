"""``python -m slicebox.bench.make_clicklog OUT.npz --rows N``: write a synthetic click log.

The file is what the recsys workload reads from ``--data`` or ``$SLICEBOX_DATA``: a
dataset to register with Slicebox and stage onto a slice's volume like any other.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from slicebox.bench import clicklog


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m slicebox.bench.make_clicklog",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("out", type=Path, help="output .npz file")
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=0, help="rows' seed (the signal is fixed)")
    args = parser.parse_args(argv)
    if args.rows < 10:
        parser.error(f"--rows must be at least 10, got {args.rows}")
    if args.out.suffix != ".npz":
        parser.error(f"output must end in .npz (numpy appends it otherwise), got {args.out}")
    log = clicklog.generate(args.rows, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log.save(args.out)
    print(f"wrote {args.rows} rows ({log.labels.mean():.1%} clicks) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

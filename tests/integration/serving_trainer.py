"""A stand-in training job for serving tests: steps of a little arithmetic, a progress
report every half second (``samples`` = steps done), until it is stopped."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # slicebox.sdk from the checkout
from slicebox.sdk import report  # noqa: E402


def main() -> None:
    steps, last = 0, time.monotonic()
    while True:
        total = 0
        for i in range(20_000):  # a step: some work on its core, then a short rest
            total += i * i
        time.sleep(0.005)
        steps += 1
        if time.monotonic() - last >= 0.5:
            report(samples=steps)
            last = time.monotonic()


if __name__ == "__main__":
    main()

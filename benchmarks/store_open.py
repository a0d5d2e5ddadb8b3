"""What opening a store costs now that Alembic keeps the schema, side by side with what it
cost before (``create_all`` of every table at every open, no revision check).

Run: ``.venv/bin/python benchmarks/store_open.py [--n 60]``. Not part of the test suite.

Both ways run in this process, interleaved, on the same kind of state directory: a new
one (the schema is made) and an existing one (nothing to do). Medians, and their ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from sqlalchemy import Connection

from slicebox.store import Store, migrations
from slicebox.store.schema import Base


def before(connection: Connection) -> None:
    """What ``Store.open`` did before Alembic."""
    Base.metadata.create_all(connection)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=60, help="opens of each kind (default 60)")
    n = parser.parse_args().n
    root = Path(tempfile.mkdtemp(prefix="sbx-open-"))
    Store.open(root / "warm").close()  # imports and the revision scripts, once per process
    results: dict[tuple[str, str], list[float]] = {}
    for i in range(n):
        for way in ("before", "alembic"):
            patch = (mock.patch.object(migrations, "bring_up_to_date", before)
                     if way == "before" else contextlib.nullcontext())
            with patch:
                folder = root / f"{way}-{i}"
                results.setdefault((way, "new"), []).append(
                    timed(lambda f=folder: Store.open(f).close()))
                results.setdefault((way, "existing"), []).append(
                    timed(lambda f=folder: Store.open(f).close()))
    print(f"Store.open on SQLite, median of {n} (ms)")
    print(f"{'state directory':<16}{'before':>10}{'alembic':>10}{'ratio':>8}")
    for kind in ("new", "existing"):
        old = statistics.median(results[("before", kind)]) * 1e3
        new = statistics.median(results[("alembic", kind)]) * 1e3
        print(f"{kind:<16}{old:>10.2f}{new:>10.2f}{new / old:>8.2f}")


if __name__ == "__main__":
    main()

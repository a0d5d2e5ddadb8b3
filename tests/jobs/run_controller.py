"""Run a controller in its own process (for the kill -9 test): state dir, pool file.

    run_controller.py STATE_DIR POOL_YAML
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from slicebox import policies  # noqa: E402
from slicebox.backends.local import LocalBackend  # noqa: E402
from slicebox.controller import Controller  # noqa: E402
from slicebox.placement.placer import Placer  # noqa: E402
from slicebox.pool.files import load_pool  # noqa: E402
from slicebox.store import Store  # noqa: E402


def main() -> None:
    state, pool_file = Path(sys.argv[1]), Path(sys.argv[2])
    pool = load_pool(pool_file)
    store = Store.open(state)
    controller = Controller(store, pool, policies.get("fifo"), Placer(pool),
                            LocalBackend(state, node=pool.nodes[0].name), state,
                            interval=0.2)
    controller.run()


if __name__ == "__main__":
    main()

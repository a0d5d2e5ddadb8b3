"""The service beside a controller in one process, as ``slicebox up`` is meant to run
them: the controller's loop on the main thread, uvicorn on a thread, SIGTERM stops both.

    serve_with_controller.py STATE_DIR POOL_YAML
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from slicebox import policies  # noqa: E402
from slicebox.backends.local import LocalBackend  # noqa: E402
from slicebox.controller import Controller  # noqa: E402
from slicebox.placement.placer import Placer  # noqa: E402
from slicebox.pool.files import load_pool  # noqa: E402
from slicebox.service import create_app  # noqa: E402
from slicebox.service.server import serve  # noqa: E402
from slicebox.store import Store  # noqa: E402


def main() -> None:
    state, pool_file = Path(sys.argv[1]), Path(sys.argv[2])
    pool = load_pool(pool_file)
    store = Store.open(state)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    service = serve(create_app(store, pool, poll_seconds=0.1), port=0, state_dir=state)
    controller = Controller(store, pool, policies.get("fifo"), Placer(pool),
                            LocalBackend(state, node=pool.nodes[0].name), state,
                            interval=0.2)
    try:
        controller.run(stop_event=stop)
    finally:
        service.stop()


if __name__ == "__main__":
    main()

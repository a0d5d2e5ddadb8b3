"""One listening TCP socket, bound before a server is started on it, so that "address in use"
or an unknown host is the caller's error at once and not a log line on a server thread, and
a uvicorn server run on a thread of its own (the API service and every service's load
balancer start this way)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

from slicebox.errors import SliceboxError

if TYPE_CHECKING:
    import uvicorn


def listening_socket(host: str, port: int, *, backlog: int, error: type[SliceboxError],
                     host_label: str) -> socket.socket:
    """A non-blocking socket listening on ``host:port`` (port 0: any free one). A host that
    does not resolve or an address that cannot be bound raises ``error``; ``host_label``
    names where the host came from in the message (an option, a spec field)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise error(f"{host_label} {host!r}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise error(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


START_TIMEOUT_S: Final = 30.0


def serve_on_thread(server: uvicorn.Server, serve: Callable[[], Coroutine[Any, Any, None]], *,
                    name: str, what: str, error: type[SliceboxError],
                    on_exit: Callable[[], None]) -> threading.Thread:
    """Run ``serve()`` (which runs ``server``) on its own thread and event loop, and return
    once ``server`` listens. A failure to start raises ``error`` ("the <what> did not
    start ..."); ``on_exit`` runs on that thread when the loop ends, however it ends."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            failure.append(exc)
        finally:
            on_exit()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if failure or not thread.is_alive():
            raise error(f"the {what} did not start: {failure[0] if failure else '?'}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise error(f"the {what} did not start within {START_TIMEOUT_S:.0f} s")
        time.sleep(0.01)
    return thread

"""A time guard for tests of untrusted input: a hang fails the test (or the fuzz example)
instead of the run.

The limit is generous (seconds, on a loaded 2-core machine); it tells "never finishes"
from "finishes", it does not measure speed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Hang(BaseException):
    """Raised in the main thread when a guarded call overruns; a BaseException so that
    no `except Exception` in the code under test can swallow it."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach only the main thread; run unguarded elsewhere
        return

    def overrun(signum: int, frame: object) -> None:
        raise Hang(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, overrun)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

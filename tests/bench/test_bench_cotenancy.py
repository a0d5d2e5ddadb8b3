"""The suite notices other processes working on a slice's cores."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from slicebox.bench.cotenancy import CoTenancyMeter, busy_seconds

SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"


@pytest.mark.skipif(busy_seconds() is None, reason="needs Linux /proc/stat")
def test_a_process_spinning_on_the_slice_is_counted_as_a_co_tenant() -> None:
    core = min(os.sched_getaffinity(0))
    meter = CoTenancyMeter((core,))
    meter.start()
    started = time.monotonic()
    spinner = subprocess.Popen(
        [sys.executable, "-c", SPIN.format(seconds=1.5)],
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    )
    time.sleep(1.6)
    # Measured before the spinner is waited for: to the meter it is someone else's.
    others = meter.stop(time.monotonic() - started)
    spinner.wait()
    assert others is not None and others >= 0.5

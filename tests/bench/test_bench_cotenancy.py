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


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a slice of 2+ cores")
def test_a_shared_multicore_slice_makes_openmp_wait_passively(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from slicebox.bench import run

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    core = min(os.sched_getaffinity(0))
    spinner = subprocess.Popen(
        [sys.executable, "-c", SPIN.format(seconds=1.0)],
        preexec_fn=lambda: os.sched_setaffinity(0, {core}),
    )
    time.sleep(0.2)  # let it start spinning
    try:
        note = run._wait_passively_if_shared("cpu")
    finally:
        spinner.wait()
    assert os.environ.get("OMP_WAIT_POLICY") == "PASSIVE"
    assert "wait passively" in note


def test_a_policy_the_user_chose_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from slicebox.bench import run

    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert run._wait_passively_if_shared("cpu") == ""
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"

"""The launcher starts a job only with the environment the controller handed it: a
controller killed while writing it must leave an attempt that never ran (so the next
controller requeues it), not a job started without its id and settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slicebox.backends.launch import __file__ as LAUNCHER


def _launch(tmp_path: Path, stdin: bytes) -> tuple[subprocess.CompletedProcess[bytes], Path,
                                                     Path]:
    exit_file, marker = tmp_path / "exit", tmp_path / "ran"
    argv = [sys.executable, "-I", LAUNCHER, "--job-id", "j1", "--attempt", "1",
            "--exit-file", str(exit_file), "--env-stdin", "--",
            sys.executable, "-c", f"open({str(marker)!r}, 'w').write('ran')"]
    done = subprocess.run(argv, input=stdin, capture_output=True, timeout=60)
    return done, exit_file, marker


@pytest.mark.parametrize("handed_over", [b"", b'{"SLICEBOX_JOB_ID": "j1", "A', b"{}", b"[]"])
def test_a_cut_off_handover_starts_nothing_and_records_no_exit(tmp_path: Path,
                                                               handed_over: bytes) -> None:
    done, exit_file, marker = _launch(tmp_path, handed_over)
    assert done.returncode == 125
    assert b"did not hand over the job's environment" in done.stderr
    assert not marker.exists()  # the job never ran
    assert not exit_file.exists()  # so the next controller requeues it


def test_a_whole_handover_runs_the_job_and_records_its_exit(tmp_path: Path) -> None:
    done, exit_file, marker = _launch(tmp_path, b'{"SLICEBOX_JOB_ID": "j1"}')
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "ran"
    assert exit_file.exists()

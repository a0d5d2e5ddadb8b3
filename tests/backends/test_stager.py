"""Dataset copies: whole or not at all, off the control loop."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from slicebox.backends.stager import (
    TMP_PREFIX,
    Stager,
    StagingAborted,
    copy_into_place,
    remove_partial_copies,
)
from slicebox.pool.composition import Staging


def _dataset(root: Path, files: int = 3) -> Path:
    src = root / "slow" / "digits"
    (src / "sub").mkdir(parents=True)
    for i in range(files):
        (src / "sub" / f"part{i}.bin").write_bytes(bytes(range(256)) * 40)
    return src


def test_copies_a_folder_into_place(tmp_path: Path):
    src = _dataset(tmp_path)
    target = tmp_path / "fast" / "cache" / "digits"
    copied = copy_into_place(src, target)
    assert copied == 3 * 10240
    assert sorted(p.name for p in (target / "sub").iterdir()) == [
        "part0.bin", "part1.bin", "part2.bin"]
    assert not [p for p in target.parent.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_an_aborted_copy_leaves_nothing_behind(tmp_path: Path):
    src = _dataset(tmp_path)
    target = tmp_path / "fast" / "digits"
    abort = threading.Event()
    abort.set()
    with pytest.raises(StagingAborted):
        copy_into_place(src, target, abort)
    assert list(target.parent.iterdir()) == []


def test_refuses_a_target_inside_its_source(tmp_path: Path):
    src = _dataset(tmp_path)
    with pytest.raises(ValueError, match="overlaps"):
        copy_into_place(src, src / "copy")


def test_partial_copies_of_a_dead_controller_are_removed(tmp_path: Path):
    (tmp_path / f"{TMP_PREFIX}digits-1234").mkdir()
    (tmp_path / "digits").mkdir()
    assert remove_partial_copies(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]


def test_stager_runs_on_a_worker_and_reports(tmp_path: Path):
    src = _dataset(tmp_path)
    stager = Stager()
    staging = Staging("digits", str(src), "nvme", str(tmp_path / "fast" / "digits"), 0.0, False)
    stager.start("j1", staging)
    missing = Staging("x", str(tmp_path / "nope"), "nvme", str(tmp_path / "fast" / "x"), 0, False)
    stager.start("j2", missing)
    results: dict[str, object] = {}
    end = time.monotonic() + 10
    while len(results) < 2 and time.monotonic() < end:
        results.update({r.job_id: r for r in stager.poll()})
        time.sleep(0.01)
    stager.close()
    assert results["j1"].ok and results["j1"].bytes == 3 * 10240  # type: ignore[attr-defined]
    assert "FileNotFoundError" in results["j2"].error  # type: ignore[attr-defined]

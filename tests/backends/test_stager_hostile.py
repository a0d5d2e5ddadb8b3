"""A dataset that changed after admission measured it cannot make the stager copy without
limit, hang on a FIFO, or read the kernel's files (issue 8, "Slices leak")."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from slicebox.backends.stager import (
    SLACK_MIN_BYTES,
    Stager,
    StageResult,
    StagingRefused,
    byte_limit,
    copy_into_place,
    evict,
)
from slicebox.pool.composition import CACHE_DIR, Staging
from slicebox.store.admission import GIB, measure
from slicebox.untrusted import resolve

PART = bytes(range(256)) * 40  # 10 KiB


def _dataset(root: Path) -> Path:
    src = root / "slow" / "digits"
    (src / "sub").mkdir(parents=True)
    for i in range(3):
        (src / "sub" / f"part{i}.bin").write_bytes(PART)
    return src


def _measured_gib(path: Path) -> float:
    """What admission records for the dataset at submit."""
    real, info = resolve(path)
    return measure(real, info) / GIB


def _copy_in_thread(src: Path, target: Path, limit: int) -> BaseException | None:
    """Run the copy on a thread, so that a copy that hangs fails the test, not the run."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            copy_into_place(src, target, limit=limit)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "the copy hangs"
    return outcome[0]


def _stage(staging: Staging) -> StageResult:
    stager = Stager(workers=1)
    try:
        stager.start("j1", staging)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            results = stager.poll()
            if results:
                return results[0]
            time.sleep(0.01)
        raise AssertionError("staging never finished")
    finally:
        stager.close()


def _nothing_left(folder: Path) -> bool:
    return not folder.exists() or list(folder.iterdir()) == []


def test_a_file_swapped_for_dev_zero_after_submit_is_refused(tmp_path: Path):
    src = _dataset(tmp_path)
    size = _measured_gib(src)
    part = src / "sub" / "part1.bin"
    part.unlink()
    part.symlink_to("/dev/zero")
    cache = tmp_path / "shm" / CACHE_DIR
    result = _stage(Staging("digits", str(src), "shm", str(cache / "digits"), size, False))
    assert not result.ok and result.error is not None
    assert str(part) in result.error and "/dev/zero" in result.error
    assert "\n" not in result.error
    assert _nothing_left(cache)


def test_a_dataset_that_became_a_symlink_to_dev_zero_is_refused(tmp_path: Path):
    src = tmp_path / "data.bin"
    src.write_bytes(PART)
    size = _measured_gib(src)
    src.unlink()
    src.symlink_to("/dev/zero")
    with pytest.raises(StagingRefused, match="/dev/zero"):
        copy_into_place(src, tmp_path / "fast" / "data.bin", limit=byte_limit(size))
    assert _nothing_left(tmp_path / "fast")


def test_a_file_that_grew_past_its_measured_size_stops_at_the_limit(tmp_path: Path):
    src = _dataset(tmp_path)
    size = _measured_gib(src)
    limit = byte_limit(size)
    # Sparse: grows to far past the limit without using the disk.
    os.truncate(src / "sub" / "part2.bin", limit + 256 * (1 << 20))
    cache = tmp_path / "fast" / CACHE_DIR
    with pytest.raises(StagingRefused, match="grew after submit") as caught:
        copy_into_place(src, cache / "digits", limit=limit)
    assert limit < caught.value.copied <= limit + 1
    assert caught.value.path == str(src / "sub" / "part2.bin")
    assert _nothing_left(cache)


def test_the_stager_applies_the_measured_size(tmp_path: Path):
    src = tmp_path / "data.bin"
    src.write_bytes(PART)
    size = _measured_gib(src)
    os.truncate(src, 2 * SLACK_MIN_BYTES)
    cache = tmp_path / "fast" / CACHE_DIR
    result = _stage(Staging("d", str(src), "nvme", str(cache / "d"), size, False))
    assert result.error is not None and "stopped after" in result.error
    assert str(src) in result.error
    assert _nothing_left(cache)


def test_a_fifo_in_the_dataset_is_refused_without_hanging(tmp_path: Path):
    src = _dataset(tmp_path)
    os.mkfifo(src / "sub" / "pipe")
    error = _copy_in_thread(src, tmp_path / "fast" / "digits", byte_limit(1.0))
    assert isinstance(error, StagingRefused)
    assert error.path == str(src / "sub" / "pipe") and "named pipe" in str(error)
    assert _nothing_left(tmp_path / "fast")


def test_a_symlink_to_a_fifo_elsewhere_is_refused_without_hanging(tmp_path: Path):
    src = _dataset(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    (src / "sub" / "part0.bin").unlink()
    (src / "sub" / "part0.bin").symlink_to(tmp_path / "pipe")
    error = _copy_in_thread(src, tmp_path / "fast" / "digits", byte_limit(1.0))
    assert isinstance(error, StagingRefused) and "named pipe" in str(error)


def test_a_socket_in_the_dataset_is_refused(tmp_path: Path):
    src = _dataset(tmp_path)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(src / "sock"))
        with pytest.raises(StagingRefused, match="socket"):
            copy_into_place(src, tmp_path / "fast" / "digits", limit=byte_limit(1.0))


@pytest.mark.parametrize("where", ["/proc/self/environ", "/sys/kernel", "/dev/null", "/"])
def test_symlinks_into_the_kernels_trees_are_refused(tmp_path: Path, where: str):
    src = _dataset(tmp_path)
    (src / "link").symlink_to(where)
    with pytest.raises(StagingRefused, match="are not data"):
        copy_into_place(src, tmp_path / "fast" / "digits", limit=byte_limit(1.0))


def test_a_symlink_loop_and_a_folder_that_contains_itself_are_refused(tmp_path: Path):
    src = _dataset(tmp_path)
    (src / "loop").symlink_to(src / "loop")
    with pytest.raises(StagingRefused, match="loop"):
        copy_into_place(src, tmp_path / "fast" / "a", limit=byte_limit(1.0))
    (src / "loop").unlink()
    (src / "sub" / "up").symlink_to(src)
    with pytest.raises(StagingRefused, match="contains itself"):
        copy_into_place(src, tmp_path / "fast" / "b", limit=byte_limit(1.0))


def test_a_symlink_into_the_cache_being_filled_is_refused(tmp_path: Path):
    src = _dataset(tmp_path)
    cache = tmp_path / "fast" / CACHE_DIR
    cache.mkdir(parents=True)
    (src / "cache").symlink_to(cache)
    with pytest.raises(StagingRefused, match="into the copy itself"):
        copy_into_place(src, cache / "digits", limit=byte_limit(1.0))


def test_regular_files_behind_symlinks_are_copied_with_their_modes(tmp_path: Path):
    """What admission accepts still stages: symlinks to data elsewhere, read-only parts."""
    src = _dataset(tmp_path)
    elsewhere = tmp_path / "elsewhere.bin"
    elsewhere.write_bytes(b"x" * 1000)
    (src / "linked.bin").symlink_to(elsewhere)
    (src / "sub" / "part0.bin").chmod(0o444)
    (src / "sub").chmod(0o555)
    try:
        target = tmp_path / "fast" / CACHE_DIR / "digits"
        copied = copy_into_place(src, target, limit=byte_limit(_measured_gib(src)))
    finally:
        (src / "sub").chmod(0o755)
    assert copied == 3 * len(PART) + 1000
    assert (target / "linked.bin").read_bytes() == b"x" * 1000
    assert not (target / "linked.bin").is_symlink()
    assert (target / "sub" / "part1.bin").read_bytes() == PART
    assert stat.S_IMODE((target / "sub" / "part0.bin").stat().st_mode) == 0o444
    evict(target)  # a read-only folder in the copy does not stop its eviction
    assert not target.exists()


def test_the_limit_is_the_measured_size_plus_slack():
    assert byte_limit(0.0) == SLACK_MIN_BYTES
    assert byte_limit(1.0) == GIB + SLACK_MIN_BYTES
    assert byte_limit(100.0) == 101 * GIB  # 1 % is more than the minimum slack
    assert byte_limit(float("nan")) == byte_limit(float("inf")) == SLACK_MIN_BYTES

"""Pulled copies without Ray: the chunked copy through ``LocalSource`` (the same calls the
agents make through Ray), its byte limit, what the source side refuses, and the route."""

from __future__ import annotations

import filecmp
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from slicebox.backends.ray import transfer
from slicebox.backends.ray.transfer import (
    CHUNK,
    Entry,
    LocalSource,
    PullStager,
    SourceRefused,
    pull_into_place,
)
from slicebox.backends.stager import TMP_PREFIX, StagingAborted, StagingRefused
from slicebox.pool.composition import Staging

MIB = 1 << 20


def dataset(root: Path) -> Path:
    data = root / "data"
    (data / "train" / "deep").mkdir(parents=True)
    (data / "train" / "a.bin").write_bytes(os.urandom(CHUNK + 12345))  # more than one chunk
    (data / "train" / "deep" / "b.txt").write_text("b" * 1000)
    (data / "empty.txt").write_bytes(b"")
    (data / "exactly-one-chunk").write_bytes(os.urandom(CHUNK))
    (data / "readonly").mkdir()
    (data / "readonly" / "r").write_text("r")
    (data / "readonly").chmod(0o555)
    os.symlink("train/deep/b.txt", data / "link-to-b")  # followed, as the local Stager does
    return data


def same_tree(a: Path, b: Path) -> None:
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only and not cmp.funny_files
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    assert not mismatch and not errors
    for sub in cmp.common_dirs:
        same_tree(a / sub, b / sub)


def leftovers(folder: Path) -> list[str]:
    if not folder.exists():  # refused before anything was written
        return []
    return [p.name for p in folder.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_a_pulled_folder_is_byte_identical_and_keeps_modes(tmp_path: Path):
    src = dataset(tmp_path)
    target = tmp_path / "cache" / "slicebox-cache" / "data"
    copied = pull_into_place(LocalSource(), str(src), target, limit=64 * MIB)
    same_tree(src, target)
    assert copied == CHUNK + 12345 + 1000 + CHUNK + 1 + 1000
    assert not (target / "link-to-b").is_symlink()  # a copy, not a link out of the cache
    assert stat.S_IMODE((target / "readonly").stat().st_mode) & 0o700 == 0o700
    assert leftovers(target.parent) == []


def test_a_single_file_is_pulled_too(tmp_path: Path):
    src = tmp_path / "one.bin"
    src.write_bytes(os.urandom(3 * MIB))
    target = tmp_path / "cache" / "one.bin"
    assert pull_into_place(LocalSource(), str(src), target, limit=8 * MIB) == 3 * MIB
    assert target.read_bytes() == src.read_bytes()


def test_a_dataset_over_its_byte_limit_is_refused_and_leaves_nothing(tmp_path: Path):
    src = dataset(tmp_path)
    target = tmp_path / "cache" / "data"
    with pytest.raises(StagingRefused, match="more than 1000 bytes"):
        pull_into_place(LocalSource(), str(src), target, limit=1000)
    assert not target.exists() and leftovers(target.parent) == []


class GrowsAfterListing(LocalSource):
    """The file keeps growing once listed: the listing's sizes cannot be trusted."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def manifest(self, source: str, limit: int) -> list[Entry]:
        listing = super().manifest(source, limit)
        with self.path.open("ab") as f:
            f.write(os.urandom(20 * MIB))
        return listing

    def chunks(self, source: str, rel: str, most: int) -> Iterator[bytes]:
        self.asked = most
        yield from super().chunks(source, rel, most)


def test_a_file_that_grows_is_stopped_one_byte_past_the_limit(tmp_path: Path):
    src = tmp_path / "grows.bin"
    src.write_bytes(os.urandom(MIB))
    target = tmp_path / "cache" / "grows.bin"
    source = GrowsAfterListing(src)
    with pytest.raises(StagingRefused, match=f"stopped after {4 * MIB + 1} bytes") as info:
        pull_into_place(source, str(src), target, limit=4 * MIB)
    assert info.value.copied == 4 * MIB + 1 and source.asked == 4 * MIB + 1
    assert not target.exists() and leftovers(target.parent) == []


def test_an_abort_stops_the_copy_and_leaves_nothing(tmp_path: Path):
    src = dataset(tmp_path)
    target = tmp_path / "cache" / "data"
    flag = threading.Event()
    flag.set()
    with pytest.raises(StagingAborted):
        pull_into_place(LocalSource(), str(src), target, flag, limit=64 * MIB)
    assert not target.exists() and leftovers(target.parent) == []


@pytest.mark.parametrize("hostile", ["fifo", "dev-zero", "loop"])
def test_the_source_refuses_what_is_not_data(tmp_path: Path, hostile: str):
    src = tmp_path / "data"
    src.mkdir()
    (src / "ok").write_text("ok")
    if hostile == "fifo":
        os.mkfifo(src / "pipe")
    elif hostile == "dev-zero":
        os.symlink("/dev/zero", src / "zeros")
    else:
        os.symlink("..", src / "up")
        os.symlink(str(src), src / "self")
    target = tmp_path / "cache" / "data"
    with pytest.raises(StagingRefused) as info:
        pull_into_place(LocalSource(), str(src), target, limit=64 * MIB)
    assert {"fifo": "named pipe", "dev-zero": "/dev", "loop": "contains itself"}[hostile] \
        in str(info.value)
    assert not target.exists() and leftovers(target.parent) == []


@pytest.mark.parametrize("rel", ["../secret", "/etc/passwd", "a/../../secret", "", "a//b",
                                 "./a"])
def test_a_chunk_request_cannot_leave_the_dataset(tmp_path: Path, rel: str):
    src = tmp_path / "data"
    (src / "a").mkdir(parents=True)
    (tmp_path / "secret").write_text("no")
    with pytest.raises(SourceRefused):  # "": the root itself, a folder here, not a file
        transfer.read_chunk(str(src), rel, 0, 10)


def test_a_chunk_request_is_bounded_and_rechecked(tmp_path: Path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "f").write_bytes(b"0123456789")
    assert transfer.read_chunk(str(src), "f", 3, 4) == b"3456"
    with pytest.raises(SourceRefused, match="at most"):
        transfer.read_chunk(str(src), "f", 0, CHUNK + 1)
    (src / "f").unlink()
    os.mkfifo(src / "f")  # swapped since it was listed
    with pytest.raises(SourceRefused, match="named pipe"):
        transfer.read_chunk(str(src), "f", 0, 4)


class Lying(LocalSource):
    def __init__(self, listing: list[Entry]) -> None:
        self.listing = listing

    def manifest(self, source: str, limit: int) -> list[Entry]:
        return self.listing


@pytest.mark.parametrize("listing", [
    [Entry("", True, 0, 0o755, 0), Entry("../../escape", False, 1, 0o644, 0)],
    [Entry("", True, 0, 0o755, 0), Entry("sub/file", False, 1, 0o644, 0)],  # no "sub" first
    [Entry("x", False, 1, 0o644, 0)],  # no root
])
def test_a_listing_from_the_other_node_cannot_write_outside_the_copy(tmp_path: Path,
                                                                     listing: list[Entry]):
    (tmp_path / "src").mkdir()
    target = tmp_path / "cache" / "data"
    with pytest.raises(StagingRefused):
        pull_into_place(Lying(listing), str(tmp_path / "src"), target, limit=MIB)
    assert not (tmp_path / "escape").exists() and not target.exists()


def test_the_route_is_direct_where_the_node_sees_the_data_and_a_pull_otherwise():
    staging = Staging("ds", "/disk/ds", "nvme", "/nvme/slicebox-cache/ds", 1.0, False)
    direct = transfer.choose_route(staging, "b", {"a": True, "b": True})
    assert direct.pull_from is None
    pulled = transfer.choose_route(staging, "b", {"b": False, "c": False, "a": True})
    assert pulled.pull_from == "a" and "object store" in pulled.why
    with pytest.raises(StagingRefused, match="no node of the pool has it"):
        transfer.choose_route(staging, "b", {"a": False, "b": False})


def test_a_cached_copy_is_reused_only_while_it_is_there(tmp_path: Path):
    target = tmp_path / "slicebox-cache" / "ds"
    cached = Staging("ds", "/x", "nvme", str(target), 1.0, cached=True)
    assert transfer.needs_copy(cached)  # the disk was wiped: copy again
    target.mkdir(parents=True)
    assert not transfer.needs_copy(cached)
    assert transfer.needs_copy(Staging("ds", "/x", "nvme", str(target), 1.0, cached=False))


def test_the_pull_stager_reports_like_the_local_stager(tmp_path: Path):
    src = dataset(tmp_path)
    old = tmp_path / "cache" / "slicebox-cache" / "old"
    old.mkdir(parents=True)
    target = tmp_path / "cache" / "slicebox-cache" / "data"
    staging = Staging("ds", str(src), "nvme", str(target), 0.01, False, evict=(str(old),))
    stager = PullStager()
    try:
        stager.start("j1", staging, LocalSource())
        results = []
        for _ in range(200):
            results += stager.poll()
            if results:
                break
            threading.Event().wait(0.05)
        (result,) = results
        event = transfer.event_of(result)
        assert result.ok and event.job_id == "j1" and not old.exists()
        same_tree(src, target)
    finally:
        stager.close()

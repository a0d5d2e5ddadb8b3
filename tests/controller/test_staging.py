"""A dataset on a slow volume is copied to a fast one before its job starts; later jobs
with the same dataset reuse the copy, and their events say which happened."""

from __future__ import annotations

from pathlib import Path

from slicebox.snapshot import JobState

from .helpers import Setup


def _dataset(setup: Setup) -> Path:
    data = setup.root / "hdd" / "corpus"
    (data / "shards").mkdir(parents=True)
    for i in range(4):
        (data / "shards" / f"{i}.txt").write_bytes(b"tokens " * 40000)
    return data


def _job(setup: Setup, name: str, data: Path) -> str:
    return setup.submit(name, setup.python_job("introspect.py"),
                        dataset={"path": str(data), "name": "corpus"})


def test_staged_to_the_fast_volume_then_reused(tmp_path: Path):
    setup = Setup(tmp_path)
    data = _dataset(setup)
    first = _job(setup, "first", data)
    setup.run_until(setup.finished(first))
    kinds = setup.reasons(first)
    assert ("staging", f"placed on {setup.store.job(first).composition.describe()}; "
            "staging corpus to nvme") in kinds
    staged = [r for k, r in kinds if k == "staged"]
    assert len(staged) == 1 and staged[0].startswith("staged corpus to nvme (1.1 MiB in ")
    # staging precedes running, and the job ran on the copy
    order = [k for k, _ in kinds]
    assert order.index("staging") < order.index("staged") < order.index("running")
    copy = Path(setup.store.job(first).composition.data_path)
    assert copy.parent.parent == tmp_path / "nvme" and sorted(
        p.name for p in (copy / "shards").iterdir()) == ["0.txt", "1.txt", "2.txt", "3.txt"]
    [record] = setup.store.datasets()
    assert (record.key, record.volume, record.path) == ("corpus", "nvme", str(copy))

    second = _job(setup, "second", data)
    setup.run_until(setup.finished(second))
    kinds = setup.reasons(second)
    assert ("reused", "reused staged copy of corpus on nvme") in kinds
    assert not [k for k, _ in kinds if k in ("staging", "staged")]
    assert setup.store.job(second).composition.data_path == str(copy)
    assert setup.store.job(second).state is JobState.SUCCEEDED


def test_jobs_placed_together_share_one_copy(tmp_path: Path):
    setup = Setup(tmp_path)
    data = _dataset(setup)
    a, b = _job(setup, "a", data), _job(setup, "b", data)
    setup.run_until(setup.finished(a, b))
    copies = [r for j in (a, b) for k, r in setup.reasons(j) if k == "staged"]
    reuses = [r for j in (a, b) for k, r in setup.reasons(j) if k == "reused"]
    assert len(copies) == 1 and reuses == ["reused staged copy of corpus on nvme"]
    assert {setup.state_of(a), setup.state_of(b)} == {JobState.SUCCEEDED}


def test_a_deleted_copy_is_made_again(tmp_path: Path):
    setup = Setup(tmp_path)
    data = _dataset(setup)
    first = _job(setup, "first", data)
    setup.run_until(setup.finished(first))
    import shutil

    shutil.rmtree(setup.store.job(first).composition.data_path)
    second = _job(setup, "second", data)
    setup.run_until(setup.finished(second))
    assert [k for k, _ in setup.reasons(second) if k == "staged"] == ["staged"]
    assert setup.state_of(second) is JobState.SUCCEEDED

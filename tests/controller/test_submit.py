"""Bad input at submit: rejected with the field and the reason, and the queue untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slicebox.controller import submit_file
from slicebox.placement.placer import Placer
from slicebox.pool.files import load_pool
from slicebox.spec import SpecError
from slicebox.store import Store

from .helpers import Setup

DGX = Path(__file__).resolve().parents[2] / "examples" / "pools" / "dgx-h100.yaml"
GOOD = "name: train\ncommand: [python3, train.py]\n"


@pytest.fixture()
def setup(tmp_path: Path) -> Setup:
    setup = Setup(tmp_path)
    (tmp_path / "train.py").write_text("print('hi')\n")
    setup.submit("accepted", ["true"])  # something already queued, that must stay as it is
    return setup


def _reject(setup: Setup, text: str | bytes, *, pool_file: Path | None = None) -> str:
    path = setup.root / "job.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return _reject_path(setup, path, pool_file=pool_file)


def _reject_path(setup: Setup, path: Path, *, pool_file: Path | None = None) -> str:
    pool = load_pool(pool_file) if pool_file else setup.pool
    before = (setup.store.jobs(), setup.store.events())
    with pytest.raises(SpecError) as err:
        submit_file(setup.store, pool, Placer(pool), path, cwd=setup.root)
    assert (setup.store.jobs(), setup.store.events()) == before  # the queue is untouched
    return str(err.value)


@pytest.mark.parametrize(("body", "field", "reason"), [
    (GOOD + "resorces: {gpus: 1}\n", "resorces", "unknown field (misspelt?)"),
    (GOOD + "resources: {gpus: -1}\n", "resources.gpus", "between 0 and 1024, got -1"),
    (GOOD + "resources: {cpus: -2}\n", "resources.cpus", "must be between 1 and 4096, got -2"),
    (GOOD + "resources: {gpus: 1, gpu_kinds: [B300]}\n", "resources.gpu_kinds",
     "unknown device kind 'B300'"),
    ("name: train\ncommand: python3 train.py | tee log.txt\n", "command",
     "shell metacharacter '|'"),
    ("name: train\ncommand: python3 train.py; rm -rf /\n", "command",
     "shell metacharacter ';'"),
    (GOOD + "dataset: {path: missing-data}\n", "dataset.path", "does not exist"),
    ("name: train\ncommand: [pyhton3, train.py]\n", "command", "'pyhton3' not found"),
    (GOOD + "workdir: nowhere\n", "workdir", "is not a directory"),
])
def test_bad_fields_name_the_field_and_the_reason(setup: Setup, body: str, field: str,
                                                  reason: str):
    message = _reject(setup, body)
    assert f"{field}: " in message and reason in message, message


def test_nine_gpus_on_an_eight_gpu_pool(setup: Setup):
    message = _reject(setup, GOOD + "resources: {gpus: 9}\n", pool_file=DGX)
    # A job may span nodes now (a gang), so the limit is the pool's, not one node's.
    assert "resources.gpus: 9 GPUs requested but the pool has 8" in message, message


def test_a_gpu_kind_the_pool_lacks(setup: Setup):
    message = _reject(setup, GOOD + "resources: {gpus: 1, gpu_kinds: [A100-80GB]}\n",
                      pool_file=DGX)
    assert "resources.gpu_kinds: none of A100-80GB is in the pool" in message


def test_unreadable_huge_and_binary_files(setup: Setup):
    assert "cannot read the file" in _reject_path(setup, setup.root / "nope.yaml")
    assert "cannot read the file" in _reject_path(setup, setup.root)  # a folder
    huge = GOOD + "# " + "x" * (300 * 1024) + "\n"
    assert "a job spec may be at most" in _reject(setup, huge)
    assert "cannot read the file" in _reject(setup, b"\xff\xfe\x00garbage")
    assert "not valid YAML" in _reject(setup, "name: [unclosed\n")
    if os.geteuid() != 0:  # root reads anything; elsewhere, a file without permission
        path = setup.root / "secret.yaml"
        path.write_text(GOOD)
        path.chmod(0)
        assert "cannot read the file" in _reject_path(setup, path)


def test_a_good_file_is_queued_with_absolute_paths(setup: Setup, tmp_path: Path):
    (tmp_path / "hdd" / "digits").mkdir()
    (tmp_path / "hdd" / "digits" / "x.bin").write_bytes(b"x" * 2048)
    path = setup.root / "job.yaml"
    path.write_text(GOOD + "dataset: {path: hdd/digits}\n")
    job_id = submit_file(setup.store, setup.pool, setup.placer, path, cwd=setup.root)
    job = setup.store.job(job_id)
    assert job.spec.dataset.path == str(tmp_path / "hdd" / "digits")
    assert job.workdir == str(tmp_path)
    assert job.dataset_size_gib == pytest.approx(2048 / (1 << 30))
    assert [j.name for j in setup.store.jobs()] == ["accepted", "train"]


def test_state_directory_default_and_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    store = Store.open()
    assert store.state_dir == tmp_path / ".slicebox"
    assert (tmp_path / ".slicebox" / "slicebox.db").exists()
    other = Store.open(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert other.state_dir is None and other.jobs() == []

"""``slicebox.checkpoint`` / ``slicebox.restore``: atomic saves, a manifest the controller
can read without trusting the job, and the top-level SDK staying import-light."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import slicebox
from slicebox import sdk

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ckpt"
    monkeypatch.setenv(sdk.CHECKPOINT_PATH_ENV, str(path))
    monkeypatch.setenv(sdk.ATTEMPT_ENV, "3")
    return path


def test_import_slicebox_is_light_and_exports_the_sdk():
    code = ("import sys, slicebox; slicebox.report(samples=1); "
            "print('torch' in sys.modules, slicebox.CHECKPOINTED)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.splitlines()
    assert out[0].startswith(":::SLICEBOX ") and json.loads(out[0][12:])["samples"] == 1
    assert out[1] == "False 85"


def test_restore_without_a_checkpoint_is_none(folder: Path, monkeypatch: pytest.MonkeyPatch):
    assert slicebox.restore() is None  # the folder does not even exist yet
    monkeypatch.delenv(sdk.CHECKPOINT_PATH_ENV)
    assert slicebox.restore() is None
    with pytest.raises(RuntimeError, match="SLICEBOX_CHECKPOINT_PATH"):
        slicebox.checkpoint({}, step=1)


def test_checkpoint_then_restore_round_trips_and_keeps_one_file(folder: Path):
    for step in (10, 20):
        slicebox.checkpoint({"w": torch.full((3,), float(step)), "step": step}, step=step,
                            samples=step * 4)
    assert sorted(p.name for p in folder.iterdir()) == [
        "ckpt-000000000020.pt", "latest.json"]
    manifest = sdk.read_manifest(folder)
    assert manifest is not None
    assert (manifest["step"], manifest["samples"], manifest["attempt"]) == (20, 80, 3)
    state = slicebox.restore()
    assert state is not None and state["step"] == 20 and state["w"].tolist() == [20.0] * 3
    restored = sdk.read_restored(folder)
    assert restored is not None and restored["samples"] == 80 and restored["attempt"] == 3
    assert restored["restore_seconds"] >= 0


@pytest.mark.parametrize("manifest", [
    '{"file": "../../etc/passwd", "step": 1}',
    '{"file": "ckpt-1.pt", "step": -1}',
    '{"file": "ckpt-1.pt", "step": 1, "samples": 1e400}',
    '[1, 2]',
    'not json',
    '{"file": "ckpt-1.pt", "step": 1, "saved_at": NaN}',
])
def test_a_junk_manifest_means_no_checkpoint(tmp_path: Path, manifest: str):
    (tmp_path / sdk.MANIFEST).write_text(manifest)
    assert sdk.read_manifest(tmp_path) is None


def test_a_linked_manifest_is_not_followed(tmp_path: Path):
    real = tmp_path / "elsewhere.json"
    real.write_text('{"file": "ckpt-1.pt", "step": 1}')
    (tmp_path / sdk.MANIFEST).symlink_to(real)
    assert sdk.read_manifest(tmp_path) is None


_SAVER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {repo!r})
    import slicebox
    big = torch.empty(24 * 1024 * 1024 // 4)  # 24 MiB: a save takes a while
    step = 0
    while True:
        step += 1
        big.fill_(float(step))
        slicebox.checkpoint({{"big": big, "step": step}}, step=step)
""")


def test_a_kill_mid_save_leaves_the_previous_checkpoint_loadable(folder: Path):
    """SIGKILL while a checkpoint is being written, several times at different moments:
    the manifest always names a whole checkpoint, and it holds what it says."""
    script = _SAVER.format(repo=str(REPO))
    for delay in (0.0, 0.05, 0.13):
        saver = subprocess.Popen([sys.executable, "-c", script], env=os.environ.copy())
        try:
            deadline = time.monotonic() + 60
            # Wait until a save is under way after at least one finished.
            while time.monotonic() < deadline:
                if (folder / sdk.MANIFEST).exists() and any(folder.glob(".ckpt-*.tmp")):
                    break
                time.sleep(0.002)
            else:
                pytest.fail("the saver never got to a second save")
            time.sleep(delay)
            saver.send_signal(signal.SIGKILL)
        finally:
            saver.kill()
            saver.wait()
        manifest = sdk.read_manifest(folder)
        assert manifest is not None
        state = slicebox.restore()
        assert state is not None and state["step"] == manifest["step"]
        assert bool((state["big"] == float(manifest["step"])).all())
    # The next save clears what a killed one left half-written.
    slicebox.checkpoint({"step": 0}, step=0)
    assert not list(folder.glob(".*.tmp"))

"""Submitting job files the way ``slicebox submit`` does, with guards for repros that
hang or eat memory on code without the fixes (so a regression fails, not freezes, CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slicebox.placement.placer import Placer
from slicebox.pool.files import load_pool
from slicebox.spec import SpecError
from slicebox.store import Store, admission
from tests.guard import time_limit

ROOT = Path(__file__).resolve().parents[2]
DGX = ROOT / "examples" / "pools" / "dgx-h100.yaml"
GOOD = "name: train\ncommand: [python3, train.py]\n"


class Submitter:
    """A store and the example DGX pool; jobs are submitted from ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.store = Store.open(root / "state")
        self.pool = load_pool(DGX)
        self.placer = Placer(self.pool)
        (root / "train.py").write_text("print('hi')\n")

    def write(self, text: str | bytes, name: str = "job.yaml") -> Path:
        path = self.root / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def submit(self, path: Path | str, *, env_allow: frozenset[str] | None = None) -> str:
        """What ``slicebox submit`` does with one file (the pool's allow-list if given)."""
        extra = {} if env_allow is None else {"env_allow": env_allow}
        return admission.submit_file(self.store, path, self.placer.feasible, cwd=self.root,
                                     **extra)

    def reject(self, text_or_path: str | bytes | Path, **kwargs: object) -> str:
        """The one-line ``SpecError`` a file gets; nothing may have been queued."""
        path = text_or_path if isinstance(text_or_path, Path) else self.write(text_or_path)
        before = self.store.jobs()
        with time_limit(20), pytest.raises(SpecError) as info:
            self.submit(path, **kwargs)  # type: ignore[arg-type]
        assert self.store.jobs() == before
        message = str(info.value)
        assert "\n" not in message and "Traceback" not in message
        return message


def run_isolated(code: str, *, timeout: float = 30, memory_bytes: int = 1 << 30
                 ) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter under a memory cap and a timeout, for repros
    that would block for ever or allocate without bound."""

    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p])}
    try:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=timeout, preexec_fn=limit, env=env, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {timeout} s")

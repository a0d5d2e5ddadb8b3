"""``slicebox.Client`` is there, but ``import slicebox`` (what every job does) imports
neither httpx nor the service's FastAPI."""

from __future__ import annotations

import subprocess
import sys


def test_client_is_exported_lazily() -> None:
    code = ("import sys, slicebox\n"
            "assert not {'httpx', 'fastapi', 'uvicorn'} & set(sys.modules), 'eager'\n"
            "from slicebox.client import Client\n"
            "assert slicebox.Client is Client\n"
            "assert 'fastapi' not in sys.modules\n"
            "try:\n    slicebox.Nope\nexcept AttributeError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "module 'slicebox' has no attribute 'Nope'"

from __future__ import annotations

from pathlib import Path

import pytest

from slicebox.backends.local import LocalBackend
from slicebox.store import Store


@pytest.fixture()
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture()
def store(state: Path) -> Store:
    return Store.open(state)


@pytest.fixture()
def backend(state: Path) -> LocalBackend:
    return LocalBackend(state)

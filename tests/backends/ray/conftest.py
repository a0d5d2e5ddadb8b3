from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# Every test here needs Ray; its cluster fixtures are in tests/ray_fixtures.py (shared with
# the controller's and the integration tests, so a session starts one cluster). `state` and
# `store` come from tests/backends/conftest.py.
pytest.importorskip("ray")

if TYPE_CHECKING:
    from slicebox.backends.ray.backend import RayBackend
    from tests.backends.ray.cluster import RayTestCluster


@pytest.fixture()
def backend(ray_connected: RayTestCluster, state: Path, agent_root: str
            ) -> Iterator[RayBackend]:
    """A controller's RayBackend on the shared cluster (closed after the test; the agents
    and what they run outlive it, as after a controller restart)."""
    from tests.backends.ray.helpers import make_backend

    made = make_backend(state, ray_connected.address, agent_root)
    yield made
    made.close()

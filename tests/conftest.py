"""Test-wide settings.

Property-based tests (hypothesis) run with a small fixed budget in the default run and a
large one in CI's slow step (``make test-slow`` sets ``SLICEBOX_HYPOTHESIS=slow``). Mark
them ``@pytest.mark.fuzz`` so the slow step selects them again.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# The shared local Ray cluster (started only by the tests that use it).
pytest_plugins = ["tests.ray_fixtures"]

settings.register_profile("default", max_examples=60, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("slow", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("SLICEBOX_HYPOTHESIS", "default"))

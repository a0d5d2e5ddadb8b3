"""Where policies are found by name: ``slicebox.policies.get("fifo")``."""

from __future__ import annotations

from slicebox.policies.base import Policy
from slicebox.registry import Registry

POLICIES: Registry[Policy] = Registry("policy", Policy)

"""Scheduling policies, one module each, found by name: ``slicebox.policies.get("fifo")``."""

from __future__ import annotations

import importlib

from slicebox.policies.base import Policy
from slicebox.policies.registry import POLICIES

# Each module registers itself on import. Add a policy: write the module, list it here.
_MODULES = ("fifo", "srtf", "tiresias", "gavel", "synergy", "fgd", "sia", "slicebox_policy",
            "elastic", "quota")
for _module in _MODULES:
    importlib.import_module(f"slicebox.policies.{_module}")


def get(name: str) -> Policy:
    """An instance of the policy called ``name`` (or at a dotted path)."""
    return POLICIES.get(name)()


def names() -> list[str]:
    return POLICIES.names()


__all__ = ["Policy", "get", "names"]

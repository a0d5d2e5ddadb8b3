"""Backends make plans so: ``local`` (processes on this machine); others register here.

Kept import-free: the launcher lives in this package and must start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> "module:Class"; imported only when asked for.
_BACKENDS = {"local": "slicebox.backends.local:LocalBackend",
             "memory": "slicebox.backends.memory:MemoryBackend"}


def names() -> list[str]:
    return sorted(_BACKENDS)


def get(name: str, **options: Any) -> Any:
    """A backend by name (or ``package.module:Class``), built with ``options``."""
    target = _BACKENDS.get(name.strip().lower(), name)
    if ":" not in target:
        raise LookupError(f"unknown backend {name!r}; valid: {', '.join(names())} "
                          "(or package.module:Class)")
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise LookupError(f"cannot load backend {name!r}: {exc}") from None
    return cls(**options)

"""Where the copied public traces live.

The copy sits in the repository's `data/traces/`; `SLICEBOX_TRACES_DIR` points
elsewhere (an installed package has no repository around it, and CI may keep one
shared copy).
"""

from __future__ import annotations

import os
import pathlib

ENV_VAR = "SLICEBOX_TRACES_DIR"
# slicebox/sim/traces/paths.py -> the repository root is three folders above `slicebox`.
_REPO_DATA = pathlib.Path(__file__).resolve().parents[3] / "data" / "traces"


def traces_dir() -> pathlib.Path:
    """The folder holding `philly/`, `gavel/`, `sia-profiles/`, ... ."""
    override = os.environ.get(ENV_VAR)
    return pathlib.Path(override) if override else _REPO_DATA


def trace_path(relative: str) -> pathlib.Path:
    """A file or folder under `traces_dir()`, e.g. `trace_path("philly/philly.csv")`."""
    return traces_dir() / relative

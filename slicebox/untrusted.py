"""Reading what users hand us (job files, pool files): size-capped YAML, readable errors.

Shared by ``slicebox.spec`` and ``slicebox.pool.files`` so that both reject a huge,
unreadable or non-YAML file the same way, and both name the field a pydantic error is in.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError


def read_yaml(path: Path, max_bytes: int, what: str, error: type[Exception]) -> object:
    """Load ``path`` as YAML (``safe_load``: no Python objects), or raise ``error`` with
    the file and the reason. ``what`` names the kind of file in the size message."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"{path}: file is {size} bytes; {what} may be at most "
                        f"{max_bytes} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read the file: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None


def describe(error: ValidationError) -> str:
    """Every problem as ``field.path: reason``, joined by "; "."""
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (misspelt?)"
        # A whole-model check already names its fields in its message.
        lines.append(f"{where}: {message}" if where else message)
    return "; ".join(lines)

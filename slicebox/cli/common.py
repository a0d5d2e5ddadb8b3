"""Options and output helpers shared by the commands."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")
POOL_OPTION = typer.Option(None, "--pool",
                           help="A pool file (YAML); default: discover this machine.")


def state_dir(ctx: typer.Context) -> Path:
    given = ctx.obj.get("state") if ctx.obj else None
    default = os.environ.get("SLICEBOX_HOME", Path.home() / ".slicebox")
    home = Path(given) if given else Path(default)
    return home.expanduser().resolve()


def fail(message: str, code: int = 2) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def to_jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def print_json(value: Any) -> None:
    typer.echo(json.dumps(to_jsonable(value), indent=2, default=str))


def load_pool_or_discover(pool_file: Path | None, home: Path):
    """The pool a command works on: a pool file, or this machine (volumes measured once)."""
    from slicebox.pool.discovery import discover_local
    from slicebox.pool.files import PoolFileError, load_pool

    if pool_file is None:
        return discover_local(home=home)
    try:
        return load_pool(pool_file)
    except PoolFileError as exc:
        raise fail(str(exc)) from None

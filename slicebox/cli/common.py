"""Options and output helpers shared by the commands.

Output contract (every command):

* ``--json``: stdout holds one JSON document, or, for a stream (``up``, ``logs -f``), one
  JSON object per line (JSON Lines). Nothing else is written to stdout; human progress
  goes to stderr.
* Text a user or a job wrote (names, paths, reasons, error messages) is printed literally:
  rich would read ``[a-z0-9]`` in a pydantic pattern as markup and drop it, so such text
  goes through :func:`literal` (or ``markup=False``).
* Exit codes: 0 success, 1 a runtime failure (``SliceboxError``), 2 a usage or validation
  error (``InputError``, and click's own usage errors).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
errors = Console(stderr=True)

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")
POOL_OPTION = typer.Option(None, "--pool",
                           help="A pool file (YAML); default: discover this machine.")
STATE_HELP = ("State directory (default: `state` in ~/.config/slicebox/config.toml, else "
              "~/.slicebox).")
STORE_HELP = ("Where jobs are kept: a database URL such as "
              "postgresql+psycopg://user:password@host:5432/slicebox "
              "(default: slicebox.db in the state directory).")

EXIT_RUNTIME = 1  # SliceboxError: the request was fine, carrying it out failed
EXIT_USAGE = 2  # InputError and click's usage errors: the request itself is wrong


def literal(text: object) -> str:
    """``text`` escaped for rich markup, so it prints exactly as written."""
    return escape(str(text))


def state_dir(ctx: typer.Context) -> Path:
    root = ctx.find_root()
    given = root.obj.get("state") if isinstance(root.obj, dict) else None
    if not given:  # option > environment > the user's config file > ~/.slicebox
        from slicebox.cli.config import configured

        given = (os.environ.get("SLICEBOX_HOME") or configured("state")
                 or Path.home() / ".slicebox")
    home = Path(given)
    return home.expanduser().resolve()


def store_url(ctx: typer.Context) -> str | None:
    """The database given with ``--store`` (or ``SLICEBOX_STORE_URL``); None: the SQLite
    file in the state directory."""
    root = ctx.find_root()
    given = root.obj.get("store") if isinstance(root.obj, dict) else None
    if given:
        return given
    from slicebox.cli.config import configured  # the user's config file, if any

    return configured("store")


# The global options a command also takes after its name: (key in ctx.obj, parameter).
_GLOBALS = {
    "state": inspect.Parameter("state_after_command", inspect.Parameter.KEYWORD_ONLY,
                               annotation=Path | None,
                               default=typer.Option(None, "--state", help=STATE_HELP)),
    "store": inspect.Parameter("store_after_command", inspect.Parameter.KEYWORD_ONLY,
                               annotation=str | None,
                               default=typer.Option(None, "--store", metavar="URL",
                                                    help=STORE_HELP)),
}
_CTX_PARAM = "slicebox_context"


def accepts_global_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` with ``--state`` and ``--store`` options of its own, so
    ``slicebox ps --state DIR`` works as well as ``slicebox --state DIR ps`` (given after
    the command, it wins).

    Typer builds a command's options from its signature, so the wrapper's signature is the
    command's plus those options (and a context, where the command takes none)."""
    signature = inspect.signature(command, eval_str=True)
    params = list(signature.parameters.values())
    ctx_name = next((p.name for p in params if p.annotation is typer.Context), None)
    extra = list(_GLOBALS.values())
    if ctx_name is None:
        extra.append(inspect.Parameter(_CTX_PARAM, inspect.Parameter.KEYWORD_ONLY,
                                       annotation=typer.Context))

    @functools.wraps(command)
    def with_state(*args: Any, **kwargs: Any) -> Any:
        given = {key: kwargs.pop(param.name) for key, param in _GLOBALS.items()}
        ctx = kwargs[ctx_name] if ctx_name else kwargs.pop(_CTX_PARAM)
        root = ctx.find_root()
        root.obj = {**(root.obj or {}), **{k: v for k, v in given.items() if v is not None}}
        return command(*args, **kwargs)

    all_params = params + extra
    with_state.__signature__ = signature.replace(parameters=all_params)  # type: ignore[attr-defined]
    with_state.__annotations__ = {p.name: p.annotation for p in all_params
                                  if p.annotation is not inspect.Parameter.empty}
    return with_state


def fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    """Print ``error: message`` (literally) to stderr; the exit to raise. ``code``: 2 for
    a bad request (the default), 1 for a runtime failure."""
    errors.print(f"[bold red]error:[/] {literal(message)}", highlight=False, soft_wrap=True)
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
    """The command's one JSON document on stdout."""
    typer.echo(json.dumps(to_jsonable(value), indent=2, default=str))


def print_json_line(value: Any) -> None:
    """One record of a JSON Lines stream on stdout: one line, flushed (``click.echo``
    flushes) so that a reader sees each record as it happens."""
    typer.echo(json.dumps(to_jsonable(value), separators=(",", ":"), default=str))


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

"""The Typer application: global options, then one module per group of commands.

Errors: every error Slicebox reports derives from ``SliceboxError``; the group catches
only that base and prints its one-line message, literally (exit 2 for bad input, 1
otherwise). Anything else that escapes is a bug, and shows as one, with its traceback.
The output and exit-code contract is in ``common.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from slicebox.cli import (
    bench_cmds,
    config,
    jobs_cmds,
    logs_cmd,
    pool_cmds,
    run_cmd,
    schema_cmd,
    service_cmds,
    sim_cmds,
)
from slicebox.cli.common import STATE_HELP, STORE_HELP, accepts_global_options, errors, literal
from slicebox.cli.store_cmds import store_app
from slicebox.cli.token_cmds import token_app
from slicebox.errors import SliceboxError


class SliceboxCommands(TyperGroup):
    def invoke(self, ctx: Any) -> Any:  # Any: typer vendors its own click
        try:
            return super().invoke(ctx)
        except SliceboxError as exc:
            message = str(exc).strip().splitlines()
            text = message[0] if message else type(exc).__name__
            errors.print(f"[bold red]error:[/] {literal(text)}", highlight=False,
                         soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(name="slicebox", no_args_is_help=True, add_completion=True,
                  cls=SliceboxCommands,
                  help="Compose right-sized slices of GPUs, cores, memory and storage for "
                       "deep-learning jobs.")


def _print_version(value: bool) -> None:
    if value:
        from slicebox import __version__

        typer.echo(f"slicebox {__version__}")
        raise typer.Exit()


@app.callback()
def main(ctx: typer.Context,
         state: Path | None = typer.Option(None, "--state", envvar="SLICEBOX_HOME",
                                           help=STATE_HELP),
         store: str | None = typer.Option(None, "--store", envvar="SLICEBOX_STORE_URL",
                                          metavar="URL", help=STORE_HELP),
         version: bool = typer.Option(False, "--version", is_eager=True,
                                      callback=_print_version,
                                      help="Print Slicebox's version and exit.")) -> None:
    # Global: every command must reach the same store (`submit` and `ps` talk to the one
    # `up` drives), so these are set once, before or after the command's name.
    ctx.obj = {"state": state, "store": store}


# Every command takes --state and --store after its name too.
for name, command in (("pool", pool_cmds.pool), ("plan", pool_cmds.plan),
                      ("submit", jobs_cmds.submit), ("run", run_cmd.run), ("ps", jobs_cmds.ps),
                      ("logs", logs_cmd.logs), ("cancel", service_cmds.cancel),
                      ("services", service_cmds.services),
                      ("events", jobs_cmds.events), ("up", jobs_cmds.up), ("down", jobs_cmds.down),
                      ("demo", jobs_cmds.demo), ("bench", bench_cmds.bench),
                      ("simulate", sim_cmds.simulate), ("schema", schema_cmd.schema),
                      ("config", config.config)):
    app.command(name)(accepts_global_options(command))
app.add_typer(store_app)
app.add_typer(token_app)

"""The Typer application: global options, then one module per group of commands.

Errors: every error Slicebox reports derives from ``SliceboxError``; the group catches
only that base and prints its one-line message (exit 2 for bad input, 1 otherwise).
Anything else that escapes is a bug, and shows as one, with its traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from slicebox.cli import bench_cmds, jobs_cmds, pool_cmds, sim_cmds
from slicebox.cli.common import errors
from slicebox.cli.store_cmds import store_app
from slicebox.errors import SliceboxError


class SliceboxCommands(TyperGroup):
    def invoke(self, ctx: Any) -> Any:  # Any: typer vendors its own click
        try:
            return super().invoke(ctx)
        except SliceboxError as exc:
            message = str(exc).strip().splitlines()
            errors.print(f"[bold red]error:[/] {message[0] if message else type(exc).__name__}",
                         highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(name="slicebox", no_args_is_help=True, add_completion=False,
                  cls=SliceboxCommands,
                  help="Compose right-sized slices of GPUs, cores, memory and storage for "
                       "deep-learning jobs.")


@app.callback()
def main(ctx: typer.Context,
         state: Path | None = typer.Option(None, "--state", envvar="SLICEBOX_HOME",
                                           help="State directory (default ~/.slicebox).")) -> None:
    ctx.obj = {"state": state}


app.command("pool")(pool_cmds.pool)
app.command("plan")(pool_cmds.plan)
app.command("submit")(jobs_cmds.submit)
app.command("ps")(jobs_cmds.ps)
app.command("logs")(jobs_cmds.logs)
app.command("cancel")(jobs_cmds.cancel)
app.command("events")(jobs_cmds.events)
app.command("up")(jobs_cmds.up)
app.command("demo")(jobs_cmds.demo)
app.command("bench")(bench_cmds.bench)
app.command("simulate")(sim_cmds.simulate)
app.add_typer(store_app)

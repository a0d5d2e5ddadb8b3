"""The Typer application: global options, then one module per group of commands."""

from __future__ import annotations

from pathlib import Path

import typer

from slicebox.cli import bench_cmds, jobs_cmds, pool_cmds, sim_cmds

app = typer.Typer(name="slicebox", no_args_is_help=True, add_completion=False,
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

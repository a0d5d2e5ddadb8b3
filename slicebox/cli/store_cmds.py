"""``slicebox store check`` and ``slicebox store backup``: the store looks after itself."""

from __future__ import annotations

from pathlib import Path

import typer

from slicebox.cli.common import (
    JSON_OPTION,
    accepts_global_options,
    console,
    literal,
    print_json,
    state_dir,
    store_url,
)

store_app = typer.Typer(name="store", no_args_is_help=True,
                        help="Check the job store, or back it up while it is in use.")


@store_app.command("check")
@accepts_global_options
def check(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Full integrity check of the store (read-only); exit 1 when anything is wrong."""
    from slicebox.store.integrity import check_state_dir

    home = state_dir(ctx)  # ctx.obj is the app's
    report = check_state_dir(home, store_url(ctx))
    if as_json:
        print_json({"database": str(report.database), "ok": report.ok,
                    "problems": report.problems, "jobs_by_state": report.jobs_by_state,
                    "size_bytes": report.size_bytes})
    else:
        for problem in report.problems:
            console.print(f"[bold red]problem:[/] {literal(problem)}", highlight=False)
        if report.ok:
            jobs = ", ".join(f"{n} {state}" for state, n in sorted(report.jobs_by_state.items()))
            console.print(f"ok: {literal(report.database)}" + (
                f" ({report.size_bytes:,} bytes; jobs: {jobs or 'none'})" if report.found
                else " (no store yet)"), highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@store_app.command("backup")
@accepts_global_options
def backup(ctx: typer.Context,
           target: Path = typer.Argument(..., help="Where to write the copy (a file)."),
           as_json: bool = JSON_OPTION) -> None:
    """A consistent copy of the store, safe while a controller runs (SQLite online backup;
    for PostgreSQL use pg_dump)."""
    from slicebox.store.integrity import backup as backup_store

    home = state_dir(ctx)  # ctx.obj is the app's
    size = backup_store(home, target, store_url(ctx))
    if as_json:
        print_json({"target": str(target), "size_bytes": size})
        return
    console.print(f"backed up the store to {target} ({size:,} bytes)", highlight=False,
                  markup=False)

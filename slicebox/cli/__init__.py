"""The ``slicebox`` command line (Typer + rich). Thin: every command calls the library."""

from slicebox.cli.app import app

__all__ = ["app"]

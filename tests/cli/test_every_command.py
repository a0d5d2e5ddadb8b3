"""Every command keeps the CLI's shared contract: ``--state`` and ``--store`` after its
name, and ``--json`` for machine-readable output."""

from __future__ import annotations

import typer

from slicebox.cli import app

ALWAYS_JSON = {"schema"}  # prints a JSON Schema and nothing else, so needs no --json


def commands(group, prefix: str = "") -> dict[str, object]:
    found: dict[str, object] = {}
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found.update(commands(command, f"{prefix}{name} "))
        else:
            found[prefix + name] = command
    return found


def test_every_command_takes_state_store_and_json() -> None:
    every = commands(typer.main.get_command(app))
    assert {"submit", "ps", "logs", "up", "plan", "simulate", "store check"} <= set(every)
    for name, command in every.items():
        options = {opt for param in command.params for opt in param.opts}
        assert "--state" in options and "--store" in options, name
        assert "--json" in options or name in ALWAYS_JSON, name

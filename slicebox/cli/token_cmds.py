"""``slicebox token create|list|revoke``: the service's API tokens.

A token is printed once, when it is made: the store keeps only its hash, so a lost token
is revoked and replaced, never shown again.
"""

from __future__ import annotations

import time

import typer
from rich.table import Table

from slicebox.cli.common import (
    JSON_OPTION,
    accepts_global_options,
    console,
    errors,
    print_json,
    state_dir,
    store_url,
)

token_app = typer.Typer(name="token", no_args_is_help=True,
                        help="API tokens of the service: one team and one scope each.")


def _open_store(ctx: typer.Context):
    from slicebox.store import Store

    return Store.open(state_dir(ctx), url=store_url(ctx))


@token_app.command("create")
@accepts_global_options
def create(ctx: typer.Context,
           team: str = typer.Option(..., "--team", help="The team the token acts for."),
           scope: str = typer.Option("submit", "--scope",
                                     help="read (see the team's jobs), submit (and submit and "
                                          "cancel them) or admin (every team's jobs)."),
           expires_in: str | None = typer.Option(
               None, "--expires-in", metavar="DURATION", help="Refuse the token after this "
               "long: e.g. 3600s, 90m, 12h, 30d, 8w (default: until revoked)."),
           as_json: bool = JSON_OPTION) -> None:
    """Make a token and print it, once (only its hash is kept)."""
    lifetime = None if expires_in is None else _duration(expires_in, "--expires-in")
    store = _open_store(ctx)
    try:
        record, token = store.create_token(team, scope, lifetime)  # TokenInputError: exit 2
    finally:
        store.close()
    if as_json:
        print_json({"id": record.id, "team": record.team, "scope": record.scope,
                    "expires_at": record.expires_at, "token": token})
        return
    until = "" if record.expires_at is None else f", expires {_when(record.expires_at)}"
    errors.print(f"token {record.id} for team {record.team} ({record.scope}{until}); it is "
                 "shown only now:", highlight=False, markup=False)
    typer.echo(token)  # alone on stdout: `TOKEN=$(slicebox token create ...)` works


@token_app.command("list")
@accepts_global_options
def list_tokens(ctx: typer.Context,
                show_all: bool = typer.Option(False, "--all", "-a",
                                              help="Include revoked tokens."),
                as_json: bool = JSON_OPTION) -> None:
    """Tokens: id, team, scope, when made and revoked (never the token itself)."""
    store = _open_store(ctx)
    try:
        records = store.tokens(include_revoked=show_all)
    finally:
        store.close()
    if as_json:
        print_json(records)
        return
    table = Table()
    for column in ("id", "team", "scope", "created", "expires", "revoked"):
        table.add_column(column, no_wrap=column == "id")
    for r in records:
        table.add_row(r.id, r.team, r.scope, _when(r.created_at), _when(r.expires_at),
                      _when(r.revoked_at))
    console.print(table)


@token_app.command("revoke")
@accepts_global_options
def revoke(ctx: typer.Context,
           tokens: list[str] = typer.Argument(..., help="Token ids (or whole tokens)."),
           as_json: bool = JSON_OPTION) -> None:
    """Revoke tokens; the service refuses them from the next request on."""
    store = _open_store(ctx)
    try:
        records = [store.revoke_token(t) for t in tokens]  # UnknownToken: exit 1
    finally:
        store.close()
    if as_json:
        print_json(records)
        return
    for r in records:
        console.print(f"revoked {r.id} (team {r.team}, {r.scope})", highlight=False,
                      markup=False)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(text: str, option: str) -> float:
    """``30d``, ``12h``, ``90m``, ``3600s`` or ``3600`` (seconds) as seconds; exit 2
    naming the option otherwise."""
    import re

    from slicebox.cli.common import fail

    match = re.fullmatch(r"\s*([0-9]{1,9})\s*([smhdw]?)\s*", text.lower())
    if match is None or int(match.group(1)) == 0:
        raise fail(f"{option}: {text[:40]!r} is not a duration such as 30d, 12h, 90m or "
                   "3600s")
    from slicebox.store.tokens import MAX_LIFETIME_S

    seconds = float(int(match.group(1)) * _UNITS[match.group(2) or "s"])
    if seconds > MAX_LIFETIME_S:
        raise fail(f"{option}: at most ten years (leave it out for a token that lasts until "
                   "it is revoked)")
    return seconds


def _when(moment: float | None) -> str:
    return "-" if moment is None else time.strftime("%Y-%m-%d %H:%M:%S",
                                                    time.localtime(moment))

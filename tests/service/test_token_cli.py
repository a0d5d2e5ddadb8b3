"""``slicebox token create|list|revoke``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.store import Store

runner = CliRunner()


def test_create_prints_the_token_once_and_list_never_shows_it(tmp_path: Path):
    made = runner.invoke(app, ["token", "create", "--team", "vision", "--scope", "read",
                               "--state", str(tmp_path)])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()  # alone on stdout, the note on stderr
    assert token.startswith("sbx_") and "shown only now" in made.stderr
    store = Store.open(tmp_path)
    try:
        record = store.authenticate(token)
    finally:
        store.close()
    assert record is not None and (record.team, record.scope) == ("vision", "read")

    listed = runner.invoke(app, ["token", "list", "--json", "--state", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.stdout)
    assert (entry["id"], entry["team"], entry["revoked_at"]) == (record.id, "vision", None)
    secret = token.split("_", 2)[2]
    assert secret not in listed.stdout
    table = runner.invoke(app, ["token", "list", "--state", str(tmp_path)])
    assert record.id in table.stdout and secret not in table.stdout

    revoked = runner.invoke(app, ["token", "revoke", record.id, "--state", str(tmp_path)])
    assert revoked.exit_code == 0 and f"revoked {record.id}" in revoked.stdout
    assert json.loads(runner.invoke(app, ["token", "list", "--json", "--state",
                                          str(tmp_path)]).stdout) == []
    every = json.loads(runner.invoke(app, ["token", "list", "--all", "--json", "--state",
                                           str(tmp_path)]).stdout)
    assert [t["id"] for t in every] == [record.id] and every[0]["revoked_at"] is not None


def test_create_json_and_bad_input(tmp_path: Path):
    made = runner.invoke(app, ["token", "create", "--team", "nlp", "--json",
                               "--state", str(tmp_path)])
    assert made.exit_code == 0, made.output
    doc = json.loads(made.stdout)
    assert (doc["team"], doc["scope"]) == ("nlp", "submit") and doc["token"].startswith("sbx_")
    bad_scope = runner.invoke(app, ["token", "create", "--team", "nlp", "--scope", "root",
                                    "--state", str(tmp_path)])
    assert bad_scope.exit_code == 2 and "scope: 'root' is not a scope" in bad_scope.stderr
    bad_team = runner.invoke(app, ["token", "create", "--team", "NLP", "--state",
                                   str(tmp_path)])
    assert bad_team.exit_code == 2 and "team: 'NLP' is not a team name" in bad_team.stderr
    unknown = runner.invoke(app, ["token", "revoke", "nope", "--state", str(tmp_path)])
    assert unknown.exit_code == 1 and "no token 'nope'" in unknown.stderr

"""~/.config/slicebox/config.toml (under a temporary HOME / XDG_CONFIG_HOME): the CLI uses
its state, store, server and token where no option or environment variable gives them
(option > environment > file > default); a broken file is refused, naming file and key; a
token in a file others can read is refused; the token is never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.cli.config import config_path

TOKEN = "sbx_0123456789ab_" + "s" * 43


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for name in ("SLICEBOX_HOME", "SLICEBOX_STORE_URL", "SLICEBOX_SERVER", "SLICEBOX_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def write_config(text: str, mode: int = 0o600) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def settings(*args: str, env: dict[str, str] | None = None) -> dict:
    result = run(*args, "config", "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_file_is_found_under_home_or_xdg_config_home(home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_path() == home / ".config" / "slicebox" / "config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    assert config_path() == home / "xdg" / "slicebox" / "config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative")  # XDG: ignored unless absolute
    assert config_path() == home / ".config" / "slicebox" / "config.toml"


def test_without_a_file_the_defaults_hold(home: Path) -> None:
    got = settings()
    assert got["exists"] is False
    assert (got["state"]["value"], got["state"]["source"]) == (str(home / ".slicebox"),
                                                               "default")
    assert got["server"] == {"value": "http://127.0.0.1:8765", "source": "default"}
    assert got["token"] == {"value": "none", "source": "default"}


def test_option_beats_environment_beats_file_beats_default(home: Path) -> None:
    from_file, from_env, from_option = home / "file-state", home / "env-state", home / "opt"
    # A real command uses the file's state directory (no server set: it runs embedded).
    write_config(f'state = "{from_file}"\n')
    assert run("ps", "--json").exit_code == 0
    assert (from_file / "slicebox.db").exists()

    write_config(f'state = "{from_file}"\nserver = "http://127.0.0.1:9"\n'
                 f'token = "{TOKEN}"\n')
    got = settings()
    assert (got["state"]["value"], got["state"]["source"]) == (str(from_file), "config file")
    assert got["server"] == {"value": "http://127.0.0.1:9", "source": "config file"}
    assert got["token"] == {"value": "set", "source": "config file"}
    # With a server set, the command goes to it (here nothing listens: refused, naming it).
    remote = run("ps", "--json")
    assert remote.exit_code == 1 and "127.0.0.1:9" in remote.output, remote.output

    env = {"SLICEBOX_HOME": str(from_env), "SLICEBOX_SERVER": "https://api.example:443"}
    got = settings(env=env)
    assert (got["state"]["value"], got["state"]["source"]) == (
        str(from_env), "environment (SLICEBOX_HOME)")
    assert got["server"]["source"] == "environment (SLICEBOX_SERVER)"
    got = settings("--state", str(from_option), env=env)
    assert (got["state"]["value"], got["state"]["source"]) == (str(from_option), "option")


def test_the_store_url_comes_from_the_file(home: Path) -> None:
    write_config('store = "oracle://db/x"\n')
    result = run("ps", "--json")  # the file's store is used: and refused, by name
    assert result.exit_code == 2
    assert "'oracle' is not supported" in result.output


@pytest.mark.parametrize(("text", "message"), [
    ('colour = "blue"\n', "colour: unknown setting"),
    ("state = 3\n", "state: must be a non-empty string"),
    ('state = "x\n', "not a valid TOML file"),
    ('server = "ftp://host"\n', "server: 'ftp://host' is not an http(s) URL"),
])
def test_a_broken_file_is_refused_naming_file_and_key(home: Path, text: str,
                                                      message: str) -> None:
    path = write_config(text)
    result = run("ps", "--json")
    assert result.exit_code == 2
    assert str(path) in result.output and message in result.output
    assert not (home / ".slicebox").exists()  # nothing was created from a half-read file


def test_a_token_others_can_read_is_refused_and_never_printed(home: Path) -> None:
    path = write_config(f'token = "{TOKEN}"\n', mode=0o644)
    result = run("config")
    assert result.exit_code == 2
    assert f"chmod 600 {path}" in result.output.replace("\n", "")
    path.chmod(0o600)
    result = run("config")
    assert result.exit_code == 0
    assert "token: set  [config file]" in result.output
    assert TOKEN not in result.output

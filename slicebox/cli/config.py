"""The user's config file: defaults for the CLI.

``$XDG_CONFIG_HOME/slicebox/config.toml`` (default ``~/.config/slicebox/config.toml``)::

    state = "~/work/slicebox-state"     # the state directory
    store = "postgresql://me@db/slicebox"   # the job store's database URL
    server = "http://127.0.0.1:8765"    # a running service (slicebox up --serve)
    token = "sbx_..."                   # its API token (the file must then be 0600)
    mlflow_ui = "http://127.0.0.1:5000" # `up --serve`: the dashboard links jobs' MLflow runs

Each setting is taken from, first to last: the command-line option, the environment
(``SLICEBOX_HOME``, ``SLICEBOX_STORE_URL``, ``SLICEBOX_SERVER``, ``SLICEBOX_TOKEN``,
``SLICEBOX_MLFLOW_UI``), this
file, the built-in default. A missing file is no error; a broken one is (exit 2, naming the
file and the key), since a silently ignored line would send jobs to the wrong store.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from slicebox.cli.common import JSON_OPTION, console, print_json, state_dir, store_url
from slicebox.errors import InputError

FILE_NAME = Path("slicebox") / "config.toml"
DEFAULT_SERVER = "http://127.0.0.1:8765"
MAX_BYTES = 64 * 1024
KEYS = {"state": "SLICEBOX_HOME", "store": "SLICEBOX_STORE_URL", "server": "SLICEBOX_SERVER",
        "token": "SLICEBOX_TOKEN", "mlflow_ui": "SLICEBOX_MLFLOW_UI"}


class ConfigError(InputError):
    """The config file cannot be used as it is."""


def config_path() -> Path:
    """Where the config file is (XDG: a relative $XDG_CONFIG_HOME is ignored)."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / FILE_NAME


def load_config(path: Path | None = None) -> dict[str, str]:
    """The settings the file gives (none when it does not exist)."""
    import tomllib

    path = path or config_path()
    try:
        with path.open("rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}: the config file is larger than {MAX_BYTES // 1024} KiB")
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML file: {exc}") from None
    settings: dict[str, str] = {}
    for key, value in data.items():
        if key not in KEYS:
            raise ConfigError(f"{path}: {key}: unknown setting (known: {', '.join(KEYS)})")
        if not isinstance(value, str) or not value.strip() or "\x00" in value:
            raise ConfigError(f"{path}: {key}: must be a non-empty string")
        settings[key] = value.strip()
    if "server" in settings:
        _check_server(settings["server"], f"{path}: server")
    if "token" in settings and mode & (stat.S_IRWXG | stat.S_IRWXO):
        # As ssh does with a private key: a token others can read is a leaked token.
        raise ConfigError(f"{path}: token: the file holds a token but other users can read "
                          f"it; run: chmod 600 {path}")
    return settings


def configured(key: str) -> str | None:
    """The config file's value for ``key`` (one of KEYS), or None."""
    return load_config().get(key)


def _check_server(url: str, field: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{field}: {url!r} is not an http(s) URL such as {DEFAULT_SERVER}")


@dataclass(frozen=True)
class Setting:
    value: str | None
    source: str  # "option", "environment (NAME)", "config file", "default"


def resolve(key: str, given: str | None = None, default: str | None = None) -> Setting:
    """``key``'s value and where it came from: option > environment > file > default."""
    if given:
        return Setting(given, "option")
    env = os.environ.get(KEYS[key])
    if env:
        return Setting(env, f"environment ({KEYS[key]})")
    from_file = configured(key)
    if from_file is not None:
        return Setting(from_file, "config file")
    return Setting(default, "default")


def server(given: str | None = None) -> Setting:
    """The service's URL a client should use."""
    setting = resolve("server", given, DEFAULT_SERVER)
    if setting.value is not None:
        _check_server(setting.value, "server")
    return setting


def mlflow_ui(given: str | None = None) -> Setting:
    """The MLflow UI `up --serve` gives the dashboard (None: none; jobs are not linked),
    checked as the service checks it, the error naming where the URL came from. (Checked
    here, not in load_config: the check is the service's, and importing the service would
    slow every command.)"""
    from slicebox.service.app import mlflow_ui_url

    setting = resolve("mlflow_ui", given)
    if setting.value is None:
        return setting
    field = {"option": "--mlflow-ui", "config file": f"{config_path()}: mlflow_ui"}.get(
        setting.source, KEYS["mlflow_ui"])
    try:
        return Setting(mlflow_ui_url(setting.value, field), setting.source)
    except InputError as exc:
        raise ConfigError(str(exc)) from None


def token(given: str | None = None) -> Setting:
    """The API token a client should send (None: none configured)."""
    return resolve("token", given)


def _source(key: str, given: object) -> str:
    """Where ``key`` came from, when typer has already folded its environment variable
    into the option's value (``given``)."""
    env = os.environ.get(KEYS[key])
    if given is not None and str(given) != env:
        return "option"
    return resolve(key).source


def config(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Show the settings in effect and where each came from (option, environment, the
    config file, default); the token is never shown, only whether there is one."""
    root = ctx.find_root()
    given = root.obj if isinstance(root.obj, dict) else {}
    the_token = token()
    rows = {
        "state": (str(state_dir(ctx)), _source("state", given.get("state"))),
        "store": (store_url(ctx) or "slicebox.db in the state directory",
                  _source("store", given.get("store"))),
        "server": (server().value, server().source),
        "token": ("set" if the_token.value else "none", the_token.source),
        "mlflow_ui": (resolve("mlflow_ui").value, resolve("mlflow_ui").source),
    }
    path = config_path()
    if as_json:
        print_json({"config_file": str(path), "exists": path.exists(),
                    **{k: {"value": v, "source": s} for k, (v, s) in rows.items()}})
        return
    console.print(f"config file: {path}{'' if path.exists() else ' (none)'}",
                  highlight=False, markup=False)
    for key, (value, source) in rows.items():
        console.print(f"{key}: {value}  [{source}]", highlight=False, markup=False)

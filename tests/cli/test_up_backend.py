"""`slicebox up --backend local|ray --address ...`: options checked before anything starts,
and a cluster that is not there said so quickly, naming --address."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.cli.jobs_cmds import POOL_KEY
from slicebox.controller import live_pool
from slicebox.controller.backend_choice import parse_address
from slicebox.errors import InputError
from slicebox.store import Store
from tests.sim.helpers import pool

runner = CliRunner()


def up(state: Path, *args: str):
    return runner.invoke(app, ["--state", str(state), "up", "--no-mlflow", "--until-idle",
                               *args])


def free_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unknown_backend_is_an_input_error_naming_it(tmp_path: Path) -> None:
    result = up(tmp_path, "--backend", "slurm")
    assert result.exit_code == 2
    assert "--backend" in result.output and "slurm" in result.output
    assert "local, ray" in result.output
    assert not (tmp_path / "slicebox.db").exists()  # refused before the store was opened


@pytest.mark.parametrize("args, named", [
    (["--backend", "ray", "--pool", "pool.yaml"], "--pool"),
    (["--backend", "ray", "--reserve-cores", "1"], "--reserve-cores"),
    (["--backend", "local", "--address", "127.0.0.1:6379"], "--address"),
    (["--backend", "ray", "--address", "no-port"], "--address"),
    (["--backend", "ray", "--address", "host:99999"], "--address"),
    (["--backend", "ray", "--address", "bad host;rm:6379"], "--address"),
])
def test_options_of_the_other_backend_or_a_malformed_address_are_input_errors(
        tmp_path: Path, args: list[str], named: str) -> None:
    result = up(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert named in result.output


def test_no_cluster_at_the_address_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    began = time.monotonic()
    result = up(tmp_path, "--backend", "ray", "--address", address,
                "--connect-timeout", "1")
    assert result.exit_code == 1, result.output
    assert f"--address {address}" in result.output
    assert "no Ray cluster answers there" in result.output
    assert time.monotonic() - began < 30  # not Ray's own minute of retries


def test_addresses_parse_as_auto_or_host_and_port() -> None:
    assert parse_address("auto").auto
    assert str(parse_address("10.0.0.5:6379")) == "10.0.0.5:6379"
    assert str(parse_address("[::1]:6379")) == "[::1]:6379"
    with pytest.raises(InputError, match="--address"):
        parse_address("10.0.0.5")


def test_submit_validates_against_the_pool_a_cluster_recorded(tmp_path: Path) -> None:
    """A job that fits only a node that is down now is accepted (it waits for the node);
    one no node ever seen could run is refused, naming the field."""
    the_pool = pool(nodes=2, gpus=2, extra=[{"name": "big", "memory_gib": 256, "cores": 32,
                                             "gpus": [{"kind": "A100", "count": 4}]}])
    store = Store.open(tmp_path)
    tracked = live_pool.LivePool(the_pool)
    tracked.update([n for n in the_pool.nodes if n.name != "big"])  # big is down now
    live_pool.record(store, tracked, "ray")
    store.close()
    assert POOL_KEY == live_pool.POOL_KEY
    wide = tmp_path / "wide.yaml"
    wide.write_text("name: wide\ncommand: [python, -c, pass]\n"
                    "resources: {gpus: 4, gpu_kinds: [A100]}\n")
    huge = tmp_path / "huge.yaml"
    huge.write_text("name: huge\ncommand: [python, -c, pass]\nresources: {gpus: 8}\n")
    ok = runner.invoke(app, ["--state", str(tmp_path), "submit", str(wide), "--json"])
    assert ok.exit_code == 0, ok.output
    assert len(json.loads(ok.output)["submitted"]) == 1
    refused = runner.invoke(app, ["--state", str(tmp_path), "submit", str(huge)])
    assert refused.exit_code == 2 and "gpus" in refused.output


def test_local_up_after_a_cluster_forgets_the_clusters_pool(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    live_pool.record(store, live_pool.LivePool(pool(nodes=2, gpus=2)), "ray")
    assert isinstance(live_pool.recorded(store), type(pool()))
    result = up(tmp_path, "--backend", "local", "--interval", "0.1")
    assert result.exit_code == 0, result.output
    assert live_pool.recorded(Store.open(tmp_path)) is None


def test_without_ray_installed_the_ray_backend_says_how_to_get_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    result = up(tmp_path, "--backend", "ray", "--address", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 1, result.output
    assert "needs Ray" in result.output and "slicebox[ray]" in result.output

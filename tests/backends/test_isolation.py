"""What the machine allows is measured, used where it is, and shown by ``slicebox pool``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from slicebox.backends import isolation
from slicebox.cli import app


def test_turned_off_it_says_so_and_makes_no_cgroups():
    level = isolation.detect("off", namespaces=False)
    assert level.memory_mode() == "rlimit-data" and not level.namespaces
    assert level.cgroups_for("j1", 1) == (None, None)
    assert level.describe().startswith("no cgroups (rlimit)")
    assert level.describe().endswith("monitor") and "cgroups turned off" in level.notes


def test_job_cgroups_go_under_a_slicebox_child_of_our_own():
    level = isolation.detect()
    memory, cpuset = level.cgroups_for("j1", 2)
    if level.version == "v1":
        own = isolation.own_v1_cgroup("memory")
        assert own is not None and memory is not None
        assert memory == isolation.V1_ROOT / "memory" / own.lstrip("/") / "slicebox" / "j1-2"
        assert level.describe().startswith("cgroup-v1 ")
    elif level.version == "v2":
        assert memory is not None and memory.parent.name == "slicebox" and cpuset is None
    else:
        assert memory is None and cpuset is None and level.notes


def test_slicebox_pool_shows_the_isolation_level(tmp_path: Path):
    result = CliRunner().invoke(app, ["--state", str(tmp_path), "pool"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("isolation: "))
    assert isolation.detect().describe() in line

"""`slicebox plan` on a pool with a MIG A100 laid out 4g.40gb + 3g.40gb, as a user runs it:
seven 1g.10gb jobs get a re-layout plan, valid for the card; with --allow-mig-reconfigure
the (fake) NVML carries it out and records the calls."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from slicebox.backends import mig_reconfigure
from slicebox.cli import app
from slicebox.pool.composition import Composition
from slicebox.pool.files import load_pool
from slicebox.pool.gpus import discover_gpus
from slicebox.pool.kinds import get_kind
from slicebox.pool.mig_layout import Placement, layout_problem
from slicebox.pool.slices import Slice, SliceType
from slicebox.snapshot import JobState
from slicebox.spec import load_spec
from slicebox.store import Store
from tests.pool import fake_nvml

ROOT = Path(__file__).resolve().parents[2]
POOL = ROOT / "examples/pools/a100-mig.yaml"
JOB = ROOT / "examples/plan-jobs/mig-1g.yaml"
runner = CliRunner()


def plan(tmp_path: Path, *extra: str, exit_code: int = 0) -> dict:
    result = runner.invoke(app, ["plan", str(JOB), "--count", "7", "--pool", str(POOL),
                                 "--state", str(tmp_path / "state"), "--json", *extra])
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


@pytest.fixture
def nvml(monkeypatch):
    fake = fake_nvml.a100_relayout()
    monkeypatch.setattr(mig_reconfigure, "load_nvml", lambda: fake)
    return fake


def test_seven_1g_jobs_get_a_relayout_plan_valid_for_the_card(tmp_path, nvml) -> None:
    card = load_pool(POOL).node("a100").device(0)
    assert [(m.profile, m.start) for m in card.mig_instances] == [("4g.40gb", 0), ("3g.40gb", 4)]
    out = plan(tmp_path)
    assert out["start"] == [] and len(out["waiting"]) == 7  # nothing fits as laid out
    relayout = out["mig_relayout"]
    (change,) = relayout["cards"]
    assert change["card"] == "a100/gpu0" and relayout["drain"] == ["a100/gpu0"]
    after = [Placement(x.split("@")[0], int(x.split("@")[1])) for x in change["after"]]
    assert layout_problem(get_kind(card.kind_name), after) is None
    assert sorted(after) == [Placement("1g.10gb", s) for s in range(7)]
    assert relayout["shortfalls"] == [] and len(relayout["would_start_after"]) == 7
    assert [s["action"] for s in relayout["steps"]][:4] == [
        "destroy compute instances", "destroy compute instances",
        "destroy GPU instance", "destroy GPU instance"]
    assert "executed" not in relayout and nvml.mig_calls == []  # shown, not done


def test_allow_mig_reconfigure_carries_it_out_through_nvml(tmp_path, nvml) -> None:
    out = plan(tmp_path, "--allow-mig-reconfigure")
    calls = [(name, where) for name, _, where in nvml.mig_calls]
    planned = [(s["action"], s["instance"]) for s in out["mig_relayout"]["steps"]]
    assert calls[:4] == [("nvmlComputeInstanceDestroy", "4g.40gb@0"),
                         ("nvmlComputeInstanceDestroy", "3g.40gb@4"),
                         ("nvmlGpuInstanceDestroy", "4g.40gb@0"),
                         ("nvmlGpuInstanceDestroy", "3g.40gb@4")]
    creates = [where for name, where in calls
               if name == "nvmlDeviceCreateGpuInstanceWithPlacement"]
    assert creates == [i for a, i in planned if a == "create GPU instance"]
    assert len(creates) == 7
    found = discover_gpus(nvml).devices[0].mig_instances
    assert [(m.profile, m.start) for m in found] == [("1g.10gb", s) for s in range(7)]
    executed = out["mig_relayout"]["executed"]
    assert len(executed) == len(planned) == 18
    assert sum(1 for e in executed if e["uuid"]) == 7


def test_text_output_shows_the_plan_and_how_to_run_it(tmp_path, nvml) -> None:
    result = runner.invoke(app, ["plan", str(JOB), "--count", "7", "--pool", str(POOL),
                                 "--state", str(tmp_path / "state")],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    # Words, not lines: the console may wrap at its own width (one made earlier in the
    # same process keeps the width it was made with).
    text = " ".join(result.output.split())
    assert "MIG re-layout (not carried out; --allow-mig-reconfigure" in text
    assert "drain a100/gpu0" in text
    assert "nvmlDeviceCreateGpuInstanceWithPlacement(GPU_INSTANCE_PROFILE_1_SLICE, start 6, " \
           "size 1)" in text
    assert nvml.mig_calls == []


def test_a_card_a_running_job_holds_is_left_alone(tmp_path, nvml) -> None:
    """The store says a job runs on the card's 3g.40gb: no plan touches it, and the seven
    jobs are told why they cannot be served."""
    store = Store.open(tmp_path / "state")
    job = store.submit(load_spec(ROOT / "examples/plan-jobs/mig-3g.yaml"))
    instance = load_pool(POOL).node("a100").device(0).mig_instances[1]
    held = Slice("a100", 0, "A100-80GB", SliceType.MIG, 3 / 7, 40, instance.uuid,
                 "3g.40gb", 4)
    store.start(job, JobState.RUNNING, Composition.on_node(job, "a100", (held,), (0,), 8),
                "test")
    store.close()
    out = plan(tmp_path, "--allow-mig-reconfigure")
    relayout = out["mig_relayout"]
    assert relayout["cards"] == [] and "executed" not in relayout
    (short,) = relayout["shortfalls"]
    assert short["wanted"] == 7 and f"a100/gpu0 runs {job}" in short["reason"]
    assert nvml.mig_calls == []


# ---- a card in MIG mode with no instance yet: the plan shows (and makes) the creations ----

def empty_card_pool(tmp_path: Path) -> Path:
    path = tmp_path / "a100-empty.yaml"
    path.write_text(yaml.safe_dump({"name": "a100-empty", "nodes": [{
        "name": "a100", "memory_gib": 512, "cores": {0: "0-31"},
        "gpus": [{"kind": "A100-80GB", "count": 1, "numa": 0, "mig": True}]}]}))
    return path


def test_jobs_for_free_room_get_a_plan_that_only_creates(tmp_path, nvml) -> None:
    """The dry run places the two jobs in free room (as the simulator does), but those
    instances exist nowhere yet: the plan shows their creation, and the flag makes them."""
    nvml.cards[0].migs = []
    args = ["plan", str(JOB), "--count", "2", "--pool", str(empty_card_pool(tmp_path)),
            "--state", str(tmp_path / "state"), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["start"]) == 2 and out["waiting"] == {}
    relayout = out["mig_relayout"]
    (change,) = relayout["cards"]
    assert change["before"] == [] and change["destroy"] == [] and len(change["create"]) == 2
    assert {s["action"] for s in relayout["steps"]} == {"create GPU instance",
                                                        "create compute instance"}
    assert len(relayout["would_start_after"]) == 2 and nvml.mig_calls == []
    text = runner.invoke(app, args[:-1], env={"COLUMNS": "200"})
    assert text.exit_code == 0, text.output
    words = " ".join(text.output.split())  # the console may wrap at its own width
    assert "create 2 instance(s) on a100/gpu0" in words
    assert "`slicebox up` starts a job only on an instance that exists" in words
    assert nvml.mig_calls == []
    result = runner.invoke(app, [*args, "--allow-mig-reconfigure"])
    assert result.exit_code == 0, result.output
    executed = json.loads(result.stdout)["mig_relayout"]["executed"]
    assert [name for name, _, _ in nvml.mig_calls] == [
        "nvmlDeviceCreateGpuInstanceWithPlacement", "nvmlGpuInstanceCreateComputeInstance"] * 2
    found = {m.uuid for m in discover_gpus(nvml).devices[0].mig_instances}
    assert {e["uuid"] for e in executed if e["uuid"]} == found and len(found) == 2

"""Issue 10's CLI contracts as a user meets them: multi-file submit is all or nothing,
error text is printed as written, exit codes tell failures apart, and ``--state`` may
follow the command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from slicebox.cli import app
from slicebox.cli.common import console
from slicebox.spec import load_spec
from slicebox.store import Store
from slicebox.store.transitions import StoreCorrupt

ROOT = Path(__file__).resolve().parents[2]
DGX = ROOT / "examples/pools/dgx-h100.yaml"
JOBS = ROOT / "examples/plan-jobs"
NAME_PATTERN = "'^[a-z0-9][a-z0-9._-]{0,62}$'"
runner = CliRunner()


def job_file(folder: Path, name: str, extra: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\ncommand: [python, -c, pass]\n{extra}")
    return path


def bad_name_file(folder: Path) -> Path:
    path = folder / "bad.yaml"
    path.write_text('name: "Bad Name!"\ncommand: [python, -c, pass]\n')
    return path


def listed(state: Path) -> list[dict]:
    result = runner.invoke(app, ["--state", str(state), "ps", "--all", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- submit: all or nothing -------------------------------------------------------------


def test_a_bad_file_after_a_good_one_queues_nothing(here: Path) -> None:
    state = here / "state"
    good, bad = job_file(here, "good"), bad_name_file(here)
    result = runner.invoke(app, ["--state", str(state), "submit", str(good), str(bad),
                                 "--pool", str(DGX)])
    assert result.exit_code == 2, result.output
    assert "bad.yaml" in result.stderr and "name:" in result.stderr
    assert listed(state) == []  # good.yaml was checked, never queued


def test_several_good_files_are_queued_in_the_order_given(here: Path) -> None:
    state = here / "state"
    files = [job_file(here, name) for name in ("zeta", "alpha", "mid")]
    result = runner.invoke(app, ["--state", str(state), "submit", *map(str, files),
                                 "--pool", str(DGX), "--json"])
    assert result.exit_code == 0, result.output
    ids = json.loads(result.stdout)["submitted"]
    jobs = listed(state)
    assert [j["id"] for j in jobs] == ids  # the queue's order (FIFO) is the files' order
    assert [j["name"] for j in jobs] == ["zeta", "alpha", "mid"]


def test_submit_many_writes_all_rows_in_one_transaction(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store.open(tmp_path)
    specs = [load_spec(job_file(tmp_path, name)) for name in ("one", "two")]
    # The second row fails to insert (its id is taken): the first must not stay behind.
    monkeypatch.setattr("slicebox.store.store.secrets.token_hex", lambda _n: "same-id")
    with pytest.raises(StoreCorrupt):
        store.submit_many([(spec, str(tmp_path), None) for spec in specs])
    assert store.jobs() == [] and store.events() == []


# ---- error text printed literally --------------------------------------------------------


def test_a_pydantic_pattern_in_an_error_is_printed_literally(here: Path) -> None:
    result = runner.invoke(app, ["--state", str(here / "s"), "submit",
                                 str(bad_name_file(here)), "--pool", str(DGX)])
    assert result.exit_code == 2
    assert NAME_PATTERN in result.stderr  # rich used to eat "[a-z0-9]" as markup


def test_plan_prints_a_bad_spec_literally(here: Path) -> None:
    result = runner.invoke(app, ["plan", str(bad_name_file(here)), "--pool", str(DGX)])
    assert result.exit_code == 2
    assert NAME_PATTERN in result.stderr


def test_ps_prints_names_and_reasons_literally(here: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "width", 250)  # one line per row: the reason unfolded
    state = here / "state"
    assert runner.invoke(app, ["--state", str(state), "submit", str(job_file(here, "j")),
                               "--pool", str(DGX)]).exit_code == 0
    store = Store.open(state)
    (job,) = store.jobs()
    store.set_reason(job.id, "waiting for [bold]gpu[/bold] [a-z0-9]")
    result = runner.invoke(app, ["--state", str(state), "ps"])
    assert "waiting for [bold]gpu[/bold] [a-z0-9]" in result.stdout


# ---- exit codes: 0 success, 1 runtime failure, 2 usage or validation ---------------------


def test_exit_codes_tell_a_runtime_failure_from_bad_input(here: Path) -> None:
    state = ["--state", str(here / "state")]
    queued = runner.invoke(app, [*state, "submit", str(job_file(here, "j")), "--pool",
                                 str(DGX), "--json"])
    assert queued.exit_code == 0
    (job_id,) = json.loads(queued.stdout)["submitted"]

    assert runner.invoke(app, [*state, "logs", "nope"]).exit_code == 1  # no such job
    assert runner.invoke(app, [*state, "cancel", "nope"]).exit_code == 1
    assert runner.invoke(app, [*state, "events", "nope"]).exit_code == 1
    assert runner.invoke(app, [*state, "cancel", job_id]).exit_code == 0
    again = runner.invoke(app, [*state, "cancel", job_id])
    assert again.exit_code == 1 and "cannot go from cancelled" in again.stderr

    assert runner.invoke(app, [*state, "submit", str(bad_name_file(here)), "--pool",
                               str(DGX)]).exit_code == 2  # a spec that does not validate
    assert runner.invoke(app, [*state, "ps", "--no-such-option"]).exit_code == 2  # usage
    assert runner.invoke(app, [*state, "up", "--policy", "no-such-policy", "--pool",
                               str(DGX)]).exit_code == 2


def test_plan_exits_1_when_a_job_can_never_fit_and_0_when_it_only_waits() -> None:
    never = runner.invoke(app, ["plan", str(JOBS / "too-big.yaml"), "--pool", str(DGX)])
    assert never.exit_code == 1, never.output
    assert "never fits this pool" in " ".join(never.stdout.split())
    # Eight 1-GPU copies fit an 8-GPU node; the ninth waits for one, but could run later.
    busy = runner.invoke(app, ["plan", str(JOBS / "train-4gpu.yaml"), "--pool", str(DGX),
                               "--count", "3", "--json"])
    assert busy.exit_code == 0, busy.output
    assert json.loads(busy.stdout)["waiting"]


# ---- --state before or after the command -------------------------------------------------


def test_state_is_accepted_after_the_command_and_wins(here: Path) -> None:
    state, other = here / "state", here / "other"
    result = runner.invoke(app, ["submit", str(job_file(here, "j")), "--pool", str(DGX),
                                 "--state", str(state)])
    assert result.exit_code == 0, result.output
    after = runner.invoke(app, ["ps", "--all", "--json", "--state", str(state)])
    assert after.exit_code == 0, after.output
    assert [j["name"] for j in json.loads(after.stdout)] == ["j"]
    # Given both ways, the one after the command is the one used.
    both = runner.invoke(app, ["--state", str(other), "ps", "-a", "--json", "--state",
                               str(state)])
    assert [j["name"] for j in json.loads(both.stdout)] == ["j"]
    checked = runner.invoke(app, ["store", "check", "--json", "--state", str(state)])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["jobs_by_state"] == {"queued": 1}


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_bad_store_url_is_bad_input_before_or_after_the_command(tmp_path: Path,
                                                                  where: str) -> None:
    store = ["--store", "mysql://x/y"]
    args = [*store, "ps"] if where == "before" else ["ps", *store]
    result = runner.invoke(app, ["--state", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert "store URL:" in result.stderr

"""benchmarks/api_load.py: a small burst runs clean through a real server, and its check
catches a lost, a duplicated and a wrongly stored submission (so its PASS means something).
The 1,000-request figures are the benchmark's to print, not a test's to assert."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from slicebox.spec.job import JobSpec
from slicebox.store import Store

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "api_load.py"


@pytest.fixture(scope="module")
def api_load():
    spec = importlib.util.spec_from_file_location("api_load", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["api_load"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("api_load", None)


def test_a_concurrent_burst_is_accepted_or_cleanly_refused(api_load) -> None:
    outcomes, wall, problems = api_load.run(requests=80, connections=80, timeout=120)
    assert problems == []
    assert wall > 0
    # One in ten is invalid, each kind refused with its field named.
    assert Counter(o.status for o in outcomes) == {201: 72, 422: 8}
    assert all(o.clean_refusal for o in outcomes if not o.valid)
    assert len({o.job_id for o in outcomes if o.job_id}) == 72


def test_the_check_catches_lost_duplicated_and_stray_jobs(api_load, tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    Outcome = api_load.Outcome

    def spec(name: str) -> JobSpec:
        return JobSpec.model_validate({"name": name, "command": ["true"]})

    kept = store.submit(spec("load-00000"))
    twice = store.submit(spec("load-00001"))
    store.submit(spec("load-00001"))  # one request, two rows
    store.submit(spec("load-00002"))  # a refused request that left a row
    outcomes = [
        Outcome(0, "load-00000", True, None, 201, 0.1, job_id=kept),
        Outcome(1, "load-00001", True, None, 201, 0.1, job_id=twice),
        Outcome(2, "load-00002", False, "colour", 422, 0.1, clean_refusal=True),
        Outcome(3, "load-00003", True, None, 201, 0.1, job_id="feedbeef"),  # not stored
        Outcome(4, "load-00004", True, None, 0, 30.0, error="ReadTimeout"),
    ]
    problems = api_load.check(outcomes, store)
    store.close()
    text = "\n".join(problems)
    assert "lost: request 3 got id feedbeef" in text
    assert "duplicated: 2 jobs named 'load-00001'" in text
    assert "refused request left a job: load-00002" in text
    assert "valid request 4: no response ReadTimeout" in text
    assert "the store holds 4 jobs; 3 were accepted" in text
    # And a clean record passes.
    clean = Store.open(tmp_path / "clean")
    job = clean.submit(spec("load-00000"))
    assert api_load.check([Outcome(0, "load-00000", True, None, 201, 0.1, job_id=job)],
                          clean) == []
    clean.close()

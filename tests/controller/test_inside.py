"""The must-show: a job reports what it sees from inside its process, and each thing it
sees equals the composition the store recorded for it."""

from __future__ import annotations

import json
from pathlib import Path

from slicebox.pool.slices import SliceType

from .helpers import GPU_UUID, Setup


def _seen(log: Path) -> dict:
    for line in log.read_text().splitlines():
        if line.startswith("INTROSPECT "):
            return json.loads(line.removeprefix("INTROSPECT "))
    raise AssertionError(f"no INTROSPECT line in {log}:\n{log.read_text()}")


def test_inside_the_process_equals_the_recorded_composition(tmp_path: Path):
    setup = Setup(tmp_path)
    data = tmp_path / "hdd" / "digits"
    data.mkdir()
    (data / "images.npy").write_bytes(b"\0" * 4096)
    job_id = setup.submit("introspect", setup.python_job("introspect.py"),
                          resources={"gpus": 1, "cpus": 1, "memory_gib": 1.5},
                          dataset={"path": str(data), "name": "digits"})
    setup.run_until(setup.finished(job_id))

    job = setup.store.job(job_id)
    comp = job.composition
    assert job.state.value == "succeeded" and comp is not None and job.log_path
    seen = _seen(Path(job.log_path))
    assert seen["job_id"] == job_id
    assert seen["affinity"] == list(comp.cores) and len(comp.cores) == 1
    assert seen["cuda_visible_devices"] == ",".join(s.uuid for s in comp.slices) == GPU_UUID
    assert comp.slices[0].shape is SliceType.WHOLE
    limit = int(comp.memory_gib * (1 << 30))
    if seen["mechanism"].startswith(("cgroup2:", "cgroup1:")):
        assert seen["cgroup_memory_max"] == limit and seen["rlimit_data"] is None
    else:
        assert seen["mechanism"] == "rlimit-data" and seen["rlimit_data"] == limit
    assert comp.memory_gib == 1.5
    # The data it reads is the staged copy on the fast volume, not the slow original.
    assert seen["data"] == comp.data_path
    assert comp.data_path is not None and comp.data_path.startswith(str(tmp_path / "nvme"))
    assert seen["data_files"] == ["images.npy"]
    assert seen["omp_num_threads"] == "1"

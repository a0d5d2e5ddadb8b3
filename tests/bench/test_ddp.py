"""The image workload as a 2-rank DDP gang (gloo) on 127.0.0.1, each rank its own process
with the environment a gang launcher gives it (``rank_environment``)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from slicebox.backends.env import rank_environment
from slicebox.sdk import read_manifest, read_restored

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 600  # a whole run on a loaded 2-core box; the runs themselves take seconds

# Each rank runs the real entry point (`slicebox.bench.run`), with the Workload captured so
# that, once it is done, the rank writes a digest of its final state_dict: a test-only look
# at the weights that leaves the workload's own output as it is.
RANK_RUNNER = """
import hashlib, json, sys
from slicebox.bench import image, run
built = []
make = image.build
def capture(config, gang=None):
    built.append(make(config, gang))
    return built[-1]
image.build = capture
code = run.main(sys.argv[2:])
model = built[-1].model
digests = {}
for part, tensors in (("parameters", model.named_parameters()),
                      ("buffers", model.named_buffers())):
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    digests[part] = digest.hexdigest()
open(sys.argv[1], "w").write(json.dumps(digests))
sys.exit(code)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rank:
    """One rank's process; its stdout lines collected as they come."""

    def __init__(self, rank: int, port: int, tmp: Path, args: list[str],
                 env: dict[str, str]) -> None:
        self.rank = rank
        self.digest_file = tmp / f"digest-{rank}"
        self.digest_file.unlink(missing_ok=True)
        cores = sorted(os.sched_getaffinity(0))
        pin = ["--cores", str(cores[rank])] if len(cores) >= 2 else []
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "SLICEBOX_GANG_TIMEOUT_S": "60",
                    **env, **rank_environment(rank, 2, "127.0.0.1", port)}
        for name in ("SLICEBOX_CHECKPOINT_PATH", "SLICEBOX_ATTEMPT"):
            if name not in env:
                full_env.pop(name, None)
        self.stderr = (tmp / f"stderr-{rank}").open("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RANK_RUNNER, str(self.digest_file), "image", "--quick",
             "--threads", "1", *pin, *args],
            cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait(self, timeout: float = WAIT_S) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def digests(self) -> dict[str, str]:
        """Digests of the rank's final parameters and buffers."""
        return json.loads(self.digest_file.read_text())

    def reports(self) -> list[dict]:
        return [json.loads(line.split(" ", 1)[1]) for line in list(self.lines)
                if line.startswith(":::SLICEBOX ")]

    def result(self) -> dict:
        return json.loads(next(line for line in reversed(self.lines)
                               if line.startswith("{")))

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
        self.stderr.close()


def _gang(tmp: Path, args: list[str], envs: tuple[dict[str, str], dict[str, str]] = ({}, {})
          ) -> list[Rank]:
    port = _free_port()
    return [Rank(r, port, tmp, args, envs[r]) for r in (0, 1)]


def _wait_for(check, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.fixture
def gang_runs():
    started: list[Rank] = []
    yield started
    for rank in started:
        rank.stop()


@pytest.mark.slow
def test_two_ranks_train_to_the_target_as_one_model(tmp_path, gang_runs):
    ranks = _gang(tmp_path, [])
    gang_runs.extend(ranks)
    codes = [r.wait() for r in ranks]
    assert codes == [0, 0], [r.errors() for r in ranks]
    first, second = (r.result() for r in ranks)
    assert first["reached_target"] and first["quality"] >= first["quality_target"] == 0.95
    # Both ranks stopped at the same step with the same (summed) quality.
    assert (second["quality"], second["epochs"]) == (first["quality"], first["epochs"])
    # Rank 0 reports the gang's samples: every training sample of every epoch, not a
    # rank's half of them.
    reports = ranks[0].reports()
    epoch_samples = first["train_samples"] // first["epochs"]
    assert 1400 < epoch_samples <= 1438  # the digits' 80 % training split
    assert max(r["samples"] for r in reports) == first["train_samples"]
    assert reports[-1]["quality"] == first["quality"]
    # Only rank 0 speaks to the controller; rank 1 prefixes what it prints.
    assert not ranks[1].reports()
    assert not any(line.startswith(":::") for line in ranks[1].lines)
    # DDP kept every weight equal, and the last evaluation made BatchNorm's statistics
    # rank 0's on every rank: the two final models are the same bytes.
    digests = [r.digests() for r in ranks]
    assert len(digests[0]["parameters"]) == 64 and digests[0] == digests[1]


@pytest.mark.slow
def test_the_time_limit_stops_every_rank_at_the_same_step(tmp_path, gang_runs):
    ranks = _gang(tmp_path, ["--target", "2.0", "--epochs", "500", "--max-seconds", "3"])
    gang_runs.extend(ranks)
    codes = [r.wait() for r in ranks]
    assert codes == [0, 0], [r.errors() for r in ranks]
    first, second = (r.result() for r in ranks)
    assert first["mlperf_status"] == second["mlperf_status"] == "aborted"
    assert first["train_samples"] == second["train_samples"] > 0
    # No evaluation after a time limit: the weights are the gang's, BatchNorm's running
    # statistics each rank's own (they are made equal whenever they are read).
    digests = [r.digests() for r in ranks]
    assert digests[0]["parameters"] == digests[1]["parameters"]


@pytest.mark.slow
def test_a_stop_asked_of_one_rank_checkpoints_the_gang_and_both_resume(tmp_path, gang_runs):
    # Separate folders: rank 0 saves for the gang, and rank 1 resumes from what rank 0
    # restored without reading any disk of its own.
    folders = (tmp_path / "ckpt-0", tmp_path / "ckpt-1")
    envs = tuple({"SLICEBOX_CHECKPOINT_PATH": str(f), "SLICEBOX_ATTEMPT": "1"}
                 for f in folders)
    # Out of reach of the quick model in a few epochs: the stop comes first.
    ranks = _gang(tmp_path, ["--target", "0.999"], envs)  # type: ignore[arg-type]
    gang_runs.extend(ranks)
    _wait_for(lambda: any(r["samples"] >= 320 for r in ranks[0].reports()))
    ranks[1].proc.send_signal(signal.SIGTERM)  # the checkpoint signal, to one rank only
    codes = [r.wait() for r in ranks]
    assert codes == [85, 85], [r.errors() for r in ranks]  # both: checkpointed, requeue me
    saved = read_manifest(folders[0])
    assert saved is not None and saved["samples"] >= 320
    assert not folders[1].exists() or not any(folders[1].iterdir())

    envs = tuple({**e, "SLICEBOX_ATTEMPT": "2"} for e in envs)
    resumed = _gang(tmp_path, ["--target", "0.95"], envs)  # type: ignore[arg-type]
    gang_runs.extend(resumed)
    codes = [r.wait() for r in resumed]
    assert codes == [0, 0], [r.errors() for r in resumed]
    restored = read_restored(folders[0])
    assert restored is not None and (restored["attempt"], restored["samples"]) == (
        2, saved["samples"])
    # The resumed gang went on from the checkpoint: its first report is past it.
    assert resumed[0].reports()[0]["samples"] > saved["samples"]
    result = resumed[0].result()
    assert result["reached_target"] and result["train_samples"] > saved["samples"]
    assert resumed[0].digests() == resumed[1].digests()


@pytest.mark.slow
@pytest.mark.parametrize("killed", [0, 1])
def test_a_rank_whose_peer_dies_fails_fast_and_says_why(tmp_path, gang_runs, killed):
    ranks = _gang(tmp_path, ["--target", "2.0", "--epochs", "500"])  # never done by itself
    gang_runs.extend(ranks)
    _wait_for(lambda: len(ranks[0].reports()) >= 2)
    ranks[killed].proc.kill()
    survivor = ranks[1 - killed]
    began = time.monotonic()
    code = survivor.wait(timeout=120)
    waited = time.monotonic() - began
    # Gloo sees the closed connection at once; the bound leaves room for a loaded machine
    # and stays under the collectives' own 60 s timeout, which would also end it.
    assert code != 0 and waited < 45, (code, waited, survivor.errors())
    result = survivor.result()
    assert result["status"] == "failed" and "GangError" in result["reason"]
    assert f"rank {1 - killed} of 2" in result["reason"] and "lost the gang" in result["reason"]

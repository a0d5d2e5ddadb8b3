"""A reference workload stopped mid-run and resumed from its checkpoint ends exactly
where an uninterrupted run with the same seed ends: same data order, same random
numbers, same weights, same quality."""

from __future__ import annotations

from pathlib import Path

import pytest

from slicebox import sdk
from slicebox.bench import registry
from slicebox.bench.config import TrainConfig
from slicebox.bench.resume import Checkpointed

# Long enough for a stop mid-epoch and periodic checkpoints; quick sizes keep it fast.
CASES = {
    "image": TrainConfig(seed=5, quick=True, max_epochs=2, quality_target=2.0,
                         checkpoint_every=7),
    "recsys": TrainConfig(seed=5, quick=True, max_epochs=1, quality_target=2.0,
                          checkpoint_every=7),
    # Perplexity: lower is better, so a target of 0 is never reached.
    "lm": TrainConfig(seed=5, quick=True, max_epochs=1, quality_target=0.0,
                      checkpoint_every=7),
}
SLOW = {"recsys", "lm"}  # over 20 s each on a loaded 2-core box


class _StopAfter:
    """``sdk.stop_requested`` that says yes from the ``n``-th question on (one question
    per training step), as if the checkpoint signal had come then."""

    def __init__(self, n: int) -> None:
        self.n, self.asked = n, 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.asked >= self.n


@pytest.mark.parametrize("workload", [
    pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else [])
    for name in sorted(CASES)])
def test_a_resumed_run_equals_an_uninterrupted_one(workload: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    config = CASES[workload]
    monkeypatch.setattr(sdk, "watch_stop", lambda: None)  # no handler in the test process
    uninterrupted = registry.train(workload, config)
    assert uninterrupted.quality is not None

    monkeypatch.setenv(sdk.CHECKPOINT_PATH_ENV, str(tmp_path))
    stops = (11, 9)  # twice: 11 steps in, then 9 steps into the resumed attempt
    for n in stops:
        monkeypatch.setattr(sdk, "stop_requested", _StopAfter(n))
        with pytest.raises(Checkpointed) as stopped:
            registry.train(workload, config)
        assert stopped.value.code == sdk.CHECKPOINTED
    manifest = sdk.read_manifest(tmp_path)
    assert manifest is not None and manifest["step"] == sum(stops)
    monkeypatch.setattr(sdk, "stop_requested", lambda: False)
    resumed = registry.train(workload, config)
    assert resumed.train_samples == uninterrupted.train_samples
    assert resumed.epochs == uninterrupted.epochs
    assert resumed.quality == pytest.approx(uninterrupted.quality, rel=1e-6)


def test_a_checkpoint_of_another_configuration_is_not_loaded(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sdk, "watch_stop", lambda: None)
    monkeypatch.setenv(sdk.CHECKPOINT_PATH_ENV, str(tmp_path))
    config = CASES["image"]
    monkeypatch.setattr(sdk, "stop_requested", _StopAfter(5))
    with pytest.raises(Checkpointed):
        registry.train("image", config)
    monkeypatch.setattr(sdk, "stop_requested", lambda: False)
    other_seed = TrainConfig(seed=6, quick=True, max_epochs=1, quality_target=2.0,
                             checkpoint_every=1000)
    result = registry.train("image", other_seed)
    # Started over: a whole epoch of its own, not the 5 steps of seed 5 plus the rest.
    assert sdk.read_restored(tmp_path) is None
    assert result.train_samples == result.epochs * 1438

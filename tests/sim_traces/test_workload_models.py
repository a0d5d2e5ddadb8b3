"""The speed models answer with the raw files' numbers at their grid points."""

from __future__ import annotations

import csv
import json
import math

import pytest

from slicebox.sim import traces
from slicebox.sim import workload_models as wm


@pytest.fixture(scope="module")
def gavel() -> wm.GavelThroughputs:
    return wm.GavelThroughputs()


@pytest.fixture(scope="module")
def gavel_raw() -> dict:
    return json.loads(traces.trace_path("gavel/simulation_throughputs.json").read_text())


@pytest.fixture(scope="module")
def sia() -> wm.SiaProfiles:
    return wm.SiaProfiles()


@pytest.fixture(scope="module")
def synergy() -> wm.SynergySensitivity:
    return wm.SynergySensitivity()


@pytest.fixture(scope="module")
def synergy_raw() -> dict:
    return json.loads(traces.trace_path("synergy/cpu_mem_sensitivity.json").read_text())


def read_rows(relative: str) -> list[dict[str, str]]:
    with traces.trace_path(relative).open(newline="") as handle:
        return list(csv.DictReader(handle))


# -- Gavel ---------------------------------------------------------------------------


def test_gavel_names(gavel: wm.GavelThroughputs) -> None:
    assert gavel.gpu_types() == ("k80", "p100", "v100")
    assert len(gavel.job_types()) == 26
    assert gavel.scale_factors("ResNet-50 (batch size 64)") == (1, 2, 4, 8)


@pytest.mark.parametrize("gpu", ["k80", "p100", "v100"])
@pytest.mark.parametrize(
    ("job_type", "scale"), [("ResNet-50 (batch size 64)", 1), ("Transformer (batch size 32)", 4)]
)
def test_gavel_throughput_matches_file(
    gavel, gavel_raw, gpu: str, job_type: str, scale: int
) -> None:
    expected = gavel_raw[gpu][str((job_type, scale))]["null"]
    assert gavel.throughput(job_type, scale, gpu) == expected
    unconsolidated = gavel_raw[f"{gpu}_unconsolidated"][str((job_type, scale))]["null"]
    assert gavel.throughput(job_type, scale, gpu, consolidated=False) == unconsolidated


def test_gavel_colocated_matches_file(gavel, gavel_raw) -> None:
    a, b = ("ResNet-18 (batch size 16)", 1), ("ResNet-50 (batch size 32)", 1)
    assert gavel.colocated(*a, *b, "k80") == tuple(gavel_raw["k80"][str(a)][str(b)])
    assert gavel.colocated(*a, *b, "v100") == tuple(gavel_raw["v100"][str(a)][str(b)])
    # A measured pair that does not fit together is (0.0, 0.0), not an error.
    assert gavel.colocated(
        "ResNet-18 (batch size 16)", 1, "ResNet-50 (batch size 128)", 1, "k80"
    ) == (0.0, 0.0)


def test_gavel_unknown_names_list_the_valid_ones(gavel) -> None:
    with pytest.raises(wm.UnknownNameError, match="unknown Gavel job type 'ResNet-51'") as caught:
        gavel.throughput("ResNet-51", 1, "v100")
    assert "ResNet-50 (batch size 64)" in str(caught.value)
    with pytest.raises(
        wm.UnknownNameError, match="unknown Gavel GPU type 'a100'; valid: k80, p100, v100"
    ):
        gavel.throughput("ResNet-50 (batch size 64)", 1, "a100")
    with pytest.raises(wm.UnknownNameError, match="valid: 1, 2, 4, 8"):
        gavel.throughput("ResNet-50 (batch size 64)", 3, "v100")
    with pytest.raises(wm.UnknownNameError, match="equal scale factor"):
        gavel.colocated("ResNet-50 (batch size 64)", 1, "ResNet-50 (batch size 64)", 2, "v100")


# -- Sia -------------------------------------------------------------------------------


def test_sia_recipes(sia: wm.SiaProfiles) -> None:
    assert sia.applications() == ("bert", "cifar10", "deepspeech2", "imagenet", "ncf", "yolov3")
    assert set(sia.gpu_types("cifar10")) == {"aws", "azure", "dgx", "dgx-ext", "quad", "rtx"}
    epochs = {app: sia.application(app).max_epochs for app in sia.applications()}
    assert epochs == {
        "bert": 2,
        "cifar10": 100,
        "ncf": 10,
        "imagenet": 90,
        "deepspeech2": 80,
        "yolov3": 50,
    }
    restart = {app: sia.rescale_time(app) for app in sia.applications()}
    assert restart == {
        "cifar10": 50,
        "deepspeech2": 25,
        "bert": 120,
        "yolov3": 80,
        "imagenet": 250,
        "ncf": 15,
    }
    assert sia.total_samples("cifar10") == 100 * 50_000
    assert sia.total_samples("imagenet") == 90 * 1_281_167
    assert sia.gpus_per_node("aws") == 4 and sia.gpus_per_node("rtx") == 8


@pytest.mark.parametrize("app", ["bert", "cifar10", "deepspeech2", "imagenet", "ncf", "yolov3"])
def test_sia_dataset_size_matches_its_progress_unit(sia: wm.SiaProfiles, app: str) -> None:
    """Sia counts progress in iterations at the smallest validated batch size; the
    dataset size must turn the same progress target into the same samples."""
    sizes = sia.validated_batch_sizes(app)
    rows = {size: read_rows(f"sia-profiles/{app}/validation-{size}.csv") for size in sizes}
    recipe = sia.application(app)
    # Sia's target: get_progress(max_epochs) = min over batch sizes of progress[max_epochs - 1].
    target = min(float(r[recipe.max_epochs - 1]["progress"]) for r in rows.values())
    assert target * sizes[0] == pytest.approx(recipe.total_samples, rel=1e-3)
    assert math.ceil(recipe.dataset_size / sizes[0]) == pytest.approx(
        float(rows[sizes[0]][0]["progress"]), abs=1
    )


def test_sia_step_time_at_a_profiled_point(sia: wm.SiaProfiles) -> None:
    rows = read_rows("sia-profiles/cifar10/placements-aws.csv")
    for row in rows[:40:7]:
        placement = tuple(int(d) for d in row["placement"])
        got = sia.step_time("cifar10", "aws", placement, float(row["local_bsz"]))
        assert got == wm.StepTime(float(row["step_time"]), float(row["sync_time"]))
    # The same placement in any rotation is the same profile entry.
    two_nodes = [r for r in rows if r["placement"] == "24"][0]
    rotated = sia.step_time("cifar10", "aws", (4, 2), float(two_nodes["local_bsz"]))
    assert rotated is not None and rotated.step == float(two_nodes["step_time"])


def test_sia_step_time_between_profiled_batch_sizes(sia: wm.SiaProfiles) -> None:
    rows = [
        r for r in read_rows("sia-profiles/imagenet/placements-rtx.csv") if r["placement"] == "2"
    ]
    low, high = sorted(rows, key=lambda r: float(r["local_bsz"]))[:2]
    middle = (float(low["local_bsz"]) + float(high["local_bsz"])) / 2
    got = sia.step_time("imagenet", "rtx", (2,), middle)
    assert got is not None
    assert got.step == pytest.approx((float(low["step_time"]) + float(high["step_time"])) / 2)
    largest = max(float(r["local_bsz"]) for r in rows)
    assert sia.step_time("imagenet", "rtx", (2,), largest + 1) is None  # outside: no data


def test_sia_step_time_off_the_placement_table_uses_scalability(sia: wm.SiaProfiles) -> None:
    # 24 T4s on 6 nodes was only measured in the scalability file; a measured point is
    # a vertex of the triangulation, so the interpolation returns it exactly.
    rows = read_rows("sia-profiles/cifar10/scalability-aws.csv")
    row = next(
        r for r in rows if (r["num_nodes"], r["num_replicas"], r["local_bsz"]) == ("6", "24", "64")
    )
    got = sia.step_time_spread("cifar10", "aws", 24, 6, 64)
    assert got is not None
    assert got.step == pytest.approx(float(row["step_time"]))
    assert got.sync == pytest.approx(float(row["sync_time"]))
    assert sia.step_time("cifar10", "aws", (4,) * 30, 64) is None  # beyond any measurement


def test_sia_samples_per_second_on_one_gpu(sia: wm.SiaProfiles) -> None:
    # One T4, batch 128 = cifar10's initial batch: no accumulation, so samples/s is
    # 128 / step time at local batch 128 (interpolated), over Sia's calibration 1.8.
    expected_step = sia.step_time("cifar10", "aws", (1,), 128)
    assert expected_step is not None
    got = sia.samples_per_second("cifar10", "aws", 1, 128)
    assert got == pytest.approx(128 / expected_step.step / 1.8)
    raw = wm.SiaProfiles(calibrate=False).samples_per_second("cifar10", "aws", 1, 128)
    assert raw == pytest.approx(128 / expected_step.step)


def test_sia_samples_per_second_with_accumulation(sia: wm.SiaProfiles) -> None:
    # ImageNet on 4 T4s of one node at batch 3200: 800 per GPU is above the largest
    # profiled local batch of placement "4" (200), so Sia accumulates 4 micro-batches
    # of 200 and only the last one synchronises.
    rows = [
        r for r in read_rows("sia-profiles/imagenet/placements-aws.csv") if r["placement"] == "4"
    ]
    largest = max(int(r["local_bsz"]) for r in rows)
    accum = math.ceil(800 / largest) - 1
    atomic = math.ceil(800 / (accum + 1))
    assert (largest, accum, atomic) == (200, 3, 200)
    top = next(r for r in rows if int(r["local_bsz"]) == atomic)
    step, sync = float(top["step_time"]), float(top["sync_time"])
    expected = 3200 / (step + (step - sync) * accum) / 1.2  # imagenet's calibration
    assert sia.samples_per_second("imagenet", "aws", 4, 3200) == pytest.approx(expected)


def test_sia_packed_placement_and_caching(sia: wm.SiaProfiles) -> None:
    assert sia.packed_placement("aws", 6) == (4, 2)
    assert sia.packed_placement("rtx", 20) == (8, 8, 4)
    assert wm.even_placement(6, 2) == (3, 3)
    first = sia.samples_per_second("bert", "rtx", 20, 192)
    assert first is not None and first > 0
    assert sia.samples_per_second("bert", "rtx", 20, 192) == first
    assert sia.samples_per_second("bert", "rtx", 20, 192, placement=(8, 4, 8)) == first


def test_sia_efficiency(sia: wm.SiaProfiles) -> None:
    assert sia.efficiency("cifar10", 128, 0) == 1.0  # the initial batch size is the unit
    early, late = sia.efficiency("cifar10", 2048, 0), sia.efficiency("cifar10", 2048, 60)
    assert 0 < early < late <= 1.0  # large batches pay early in training
    with pytest.raises(ValueError, match="outside the validated"):
        sia.efficiency("cifar10", 8192, 0)


def test_sia_unknown_names(sia: wm.SiaProfiles) -> None:
    with pytest.raises(wm.UnknownNameError, match="unknown Sia application 'mnist'") as caught:
        sia.samples_per_second("mnist", "aws", 1, 32)
    assert "cifar10" in str(caught.value)
    with pytest.raises(wm.UnknownNameError, match="unknown GPU type for cifar10 'tpu'") as caught:
        sia.step_time("cifar10", "tpu", (1,), 32)
    assert "dgx-ext" in str(caught.value)


# -- Synergy -----------------------------------------------------------------------------


def test_synergy_grid_points_match_file(synergy, synergy_raw) -> None:
    cpus = synergy_raw["axes"]["rows_cpu_cores"]
    memory = synergy_raw["axes"]["cols_memory_gb"]
    for name in ("res18_1", "alexnet_1", "shufflenet_1"):
        table = synergy_raw["models"][name]["tput"]
        for i, cores in enumerate(cpus):
            for j, gigabytes in enumerate(memory):
                assert synergy.speedup(name, cores, gigabytes) == pytest.approx(table[i][j])


def test_synergy_multi_gpu_grid_starts_at_62_5_gb(synergy, synergy_raw) -> None:
    table = synergy_raw["models"]["res50_4"]["tput"]
    assert synergy.speedup("res50_4", 2, 62.5) == pytest.approx(table[1][0])  # 0.74
    assert synergy.speedup("res50_4", 2, 250) == pytest.approx(table[1][3])
    # Rows of 0 are core counts the server could not give 4 GPUs: past the last
    # measured row (6 cores) the speed stays at that row's.
    assert synergy.speedup("res50_4", 24, 62.5) == pytest.approx(table[5][0])


def test_synergy_bilinear_between_points(synergy, synergy_raw) -> None:
    table = synergy_raw["models"]["alexnet_1"]["tput"]
    # Between 9 and 12 cores (rows 6, 7) and 62.5 and 125 GB (columns 1, 2).
    corners = [table[6][1], table[6][2], table[7][1], table[7][2]]
    assert synergy.speedup("alexnet_1", 10.5, 93.75) == pytest.approx(sum(corners) / 4)
    assert synergy.speedup("alexnet_1", 7.5, 62.5) == pytest.approx((table[5][1] + table[6][1]) / 2)


def test_synergy_clamps_outside_the_grid(synergy, synergy_raw) -> None:
    table = synergy_raw["models"]["res18_1"]["tput"]
    assert synergy.speedup("res18_1", 0.5, 10) == pytest.approx(table[0][0])
    assert synergy.speedup("res18_1", 64, 1000) == pytest.approx(table[-1][-1])


def test_synergy_defaults_and_names(synergy, synergy_raw) -> None:
    assert len(synergy.models()) == 33
    profile = synergy.profile("res18", gpus=4)
    raw = synergy_raw["models"]["res18_4"]
    assert (profile.name, profile.cpus, profile.memory_gb, profile.speedup) == (
        "res18_4",
        raw["cpus"],
        raw["mem"],
        raw["speedup"],
    )
    assert synergy.config_for("bert", gpus=4) == "bert_1"  # only the 1-GPU grid exists
    assert synergy.profile("bert").memory_gb == 62.5  # Synergy's default where unprofiled
    with pytest.raises(wm.UnknownNameError, match="unknown Synergy model 'vgg'") as caught:
        synergy.speedup("vgg", 3, 62.5)
    assert "res50" in str(caught.value)

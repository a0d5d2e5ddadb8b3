"""The constants Sia's simulator attaches to each application of the Pollux/Sia traces.

Read from siasosp23/artifacts `sia-simulator/applications.py` (max_epochs per
application in `APPLICATIONS`, `rescale_time` in `Application.__init__`) and
`sia-simulator/simulator_config.py` (GPUs per node, `SLOWDOWNS`). Sia's simulator
has no dataset sizes: it counts progress in iterations at the smallest validated
batch size. The sizes below are the published training-set sizes that match that
progress (progress per epoch x smallest batch size, and Sia's progress target x
smallest batch size / max_epochs, agree with them to within 0.05 %; the tests check).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class SiaApplication:
    """One application's training recipe in Sia's simulator.

    Attributes:
        name: the application ('cifar10', ...), as the workload CSVs name it.
        max_epochs: epochs every job of this application trains for.
        dataset_size: training samples per epoch.
        rescale_time: seconds of checkpoint-restart charged on every re-allocation.
        slowdown: Sia's calibration of its simulator to real runs: simulated
            throughput is divided by it (`calibration_factor = 1 / SLOWDOWNS[app]`).
        dataset: where `dataset_size` comes from.
    """

    name: str
    max_epochs: int
    dataset_size: int
    rescale_time: float
    slowdown: float
    dataset: str

    @property
    def total_samples(self) -> int:
        """Samples a job of this application processes to finish."""
        return self.max_epochs * self.dataset_size


APPLICATIONS: dict[str, SiaApplication] = {
    app.name: app
    for app in (
        SiaApplication(
            "bert", 2, 88_641, 120.0, 1.2, "SQuAD v1.1 train, 88,641 features at seq 384"
        ),
        SiaApplication("cifar10", 100, 50_000, 50.0, 1.8, "CIFAR-10 train"),
        # No published split size matches exactly; this is Sia's own progress per
        # epoch: 28,536 iterations at batch 20 over 80 epochs = 7,134 samples/epoch.
        SiaApplication("deepspeech2", 80, 7_134, 25.0, 1.2, "derived from Sia's validation trace"),
        SiaApplication("imagenet", 90, 1_281_167, 250.0, 1.2, "ImageNet-1k train"),
        SiaApplication(
            "ncf",
            10,
            4_970_845,
            15.0,
            1.5,
            "MovieLens-1M: 994,169 train ratings x (1 positive + 4 negatives)",
        ),
        SiaApplication("yolov3", 50, 16_551, 80.0, 1.2, "PASCAL VOC 2007+2012 trainval"),
    )
}

# GPUs per node of each GPU type Sia profiled (`cluster_ngpus_per_node`).
GPUS_PER_NODE: dict[str, int] = {"aws": 4, "azure": 8, "dgx": 8, "dgx-ext": 8, "quad": 4, "rtx": 8}
GPU_MODELS: dict[str, str] = {
    "aws": "T4 (g4dn.12xlarge)",
    "azure": "V100-32GB (ND40rs_v2)",
    "dgx": "A100-40GB NVLink (few batch sizes)",
    "dgx-ext": "A100-40GB NVLink",
    "quad": "Quadro RTX 6000",
    "rtx": "RTX 2080Ti",
}
# Sia's default cluster (`cluster_nnodes`): 6x4 T4 + 2x8 A100 + 3x8 2080Ti = 64 GPUs.
DEFAULT_CLUSTER_NODES: dict[str, int] = {"aws": 6, "dgx-ext": 2, "rtx": 3}
# Sia caps the node count it interpolates over at the largest it profiled.
MAX_INTERPOLATED_NODES = 16

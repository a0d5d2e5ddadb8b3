"""The input data of the traces' workloads: which data set a job reads, and how big it is.

Staging time in the simulator is size / bandwidth, so only the order of magnitude
matters; sizes are the public training sets' download sizes. Philly and Alibaba jobs
name no workload, so they stage nothing (None), rather than a made-up size.
"""

from __future__ import annotations

from slicebox.spec.demand import DatasetRef

_GIB = 1.0

# data set -> size in GiB
SIZES_GIB: dict[str, float] = {
    "imagenet": 140.0 * _GIB,  # ILSVRC2012 train
    "cifar10": 0.17 * _GIB,
    "squad-bert": 1.4 * _GIB,  # SQuAD v1.1 features + BERT checkpoint
    "librispeech-100": 6.3 * _GIB,
    "voc": 2.8 * _GIB,  # PASCAL VOC 2007+2012 trainval
    "movielens-1m": 0.03 * _GIB,
    "movielens-20m": 0.2 * _GIB,
    "multi30k": 0.01 * _GIB,
    "wikitext2": 0.01 * _GIB,
    "monet2photo": 0.3 * _GIB,
}

# Sia application -> data set
_SIA = {
    "imagenet": "imagenet",
    "cifar10": "cifar10",
    "bert": "squad-bert",
    "deepspeech2": "librispeech-100",
    "yolov3": "voc",
    "ncf": "movielens-1m",
}

# Gavel job-type prefix -> data set (its trace's working directories)
_GAVEL = {
    "ResNet-50": "imagenet",
    "ResNet-18": "cifar10",
    "Transformer": "multi30k",
    "LM": "wikitext2",
    "Recommendation": "movielens-20m",
    "CycleGAN": "monet2photo",
}


def _ref(name: str | None) -> DatasetRef | None:
    if name is None:
        return None
    return DatasetRef(key=name, path=f"/datasets/{name}", size_gib=SIZES_GIB[name])


def for_sia(app: str) -> DatasetRef | None:
    return _ref(_SIA.get(app))


def for_gavel(job_type: str) -> DatasetRef | None:
    prefix = job_type.split(" (", 1)[0]
    return _ref(_GAVEL.get(prefix))

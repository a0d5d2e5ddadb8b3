"""Compositions in the store's JSON: gangs round-trip, and rows written before parts read."""

from __future__ import annotations

import json

import pytest

from slicebox.pool.composition import Composition, Part, Staging
from slicebox.pool.slices import Slice, SliceType
from slicebox.store.codec import composition_from_json, composition_to_json

# A row exactly as the codec wrote it before compositions had parts (git history:
# `git show HEAD:slicebox/store/codec.py`, dataclasses.asdict of the one-node Composition).
OLD_ROW = """
{"job_id": "j1", "node": "dgx-h100",
 "slices": [{"node": "dgx-h100", "device": 3, "kind": "H100", "shape": "fraction",
             "compute": 0.5, "memory_gib": 20.0, "uuid": "GPU-abc", "mig_profile": null,
             "mig_start": null}],
 "cores": [0, 1, 2, 3], "memory_gib": 32.0, "numa_nodes": [0],
 "data_path": "/raid/slicebox-cache/digits",
 "staging": {"dataset": "digits", "source": "/mnt/datasets/digits", "volume": "raid",
             "target": "/raid/slicebox-cache/digits", "size_gib": 1.5, "cached": false,
             "evict": ["/raid/slicebox-cache/old"]}}
"""


def test_a_row_written_before_parts_reads_as_one_part() -> None:
    comp = composition_from_json(json.loads(OLD_ROW))
    assert not comp.multi_node and comp.nodes == ("dgx-h100",)
    assert comp.node == "dgx-h100" and comp.cores == (0, 1, 2, 3) and comp.numa_nodes == (0,)
    (s,) = comp.slices
    assert (s.device, s.shape, s.compute, s.uuid) == (3, SliceType.FRACTION, 0.5, "GPU-abc")
    assert comp.memory_gib == 32.0 and comp.data_path == "/raid/slicebox-cache/digits"
    assert comp.staging is not None and comp.staging.evict == ("/raid/slicebox-cache/old",)
    # Written again it takes the new form and reads back the same.
    assert composition_from_json(composition_to_json(comp)) == comp


def _whole(node: str, device: int) -> Slice:
    return Slice(node, device, "H100", SliceType.WHOLE, 1.0, 80.0, f"GPU-{node}-{device}")


def test_a_gang_round_trips_through_json() -> None:
    gang = Composition("big", (
        Part("a", (_whole("a", 0), _whole("a", 1)), (0, 1), 64.0, (0,)),
        Part("b", (_whole("b", 0),), (4,), 32.0, (1,))),
        data_path="/scratch/x", staging=Staging("x", "/mnt/x", "nvme", "/scratch/x", 2.0,
                                                cached=True))
    text = json.dumps(composition_to_json(gang))
    back = composition_from_json(json.loads(text))
    assert back == gang
    assert back.multi_node and back.nodes == ("a", "b") and back.memory_gib == 96.0
    assert back.gpu_share == 3.0 and back.core_count == 3


def test_single_node_views_refuse_a_gang_naming_the_job() -> None:
    gang = Composition("big", (Part("a", (_whole("a", 0),), (0,), 1.0),
                               Part("b", (_whole("b", 0),), (0,), 1.0)))
    for view in ("node", "cores", "numa_nodes"):
        with pytest.raises(ValueError, match="job big: its composition spans 2 nodes"):
            getattr(gang, view)
    with pytest.raises(ValueError, match="node listed twice"):
        Composition("x", (Part("a", (), (0,), 1.0), Part("a", (), (1,), 1.0)))

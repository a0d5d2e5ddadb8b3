"""Compositions to JSON and back (the store keeps them as JSON columns).

Rows written before compositions had parts (one node: ``node``, ``slices``, ``cores``,
``memory_gib``, ``numa_nodes`` at the top level) are still read, as one part.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from slicebox.pool.composition import Composition, Part, Staging
from slicebox.pool.slices import Slice, SliceType


def _part_to_json(part: Part) -> dict[str, Any]:
    slices = []
    for s in part.slices:
        item = dataclasses.asdict(s)
        item["shape"] = str(s.shape)
        slices.append(item)
    return {"node": part.node, "slices": slices, "cores": list(part.cores),
            "memory_gib": part.memory_gib, "numa_nodes": list(part.numa_nodes)}


def composition_to_json(comp: Composition) -> dict[str, Any]:
    staging = dataclasses.asdict(comp.staging) if comp.staging is not None else None
    if staging is not None:
        staging["evict"] = list(comp.staging.evict) if comp.staging else []
    return {"job_id": comp.job_id, "parts": [_part_to_json(p) for p in comp.parts],
            "data_path": comp.data_path, "staging": staging}


def _part_from_json(data: dict[str, Any]) -> Part:
    slices = tuple(
        Slice(**{**item, "shape": SliceType(item["shape"])}) for item in data.get("slices", ())
    )
    return Part(node=data["node"], slices=slices, cores=tuple(data.get("cores", ())),
                memory_gib=float(data["memory_gib"]),
                numa_nodes=tuple(data.get("numa_nodes", ())))


def composition_from_json(data: dict[str, Any]) -> Composition:
    staging = None
    if data.get("staging"):
        fields = dict(data["staging"])
        fields["evict"] = tuple(fields.get("evict", ()))
        staging = Staging(**fields)
    if "parts" in data:
        parts = tuple(_part_from_json(p) for p in data["parts"])
    else:  # a row from before parts: the composition's own fields are its one part
        parts = (_part_from_json(data),)
    return Composition(job_id=data["job_id"], parts=parts, data_path=data.get("data_path"),
                       staging=staging)

"""Compositions to JSON and back (the store keeps them as JSON columns)."""

from __future__ import annotations

import dataclasses
from typing import Any

from slicebox.pool.composition import Composition, Staging
from slicebox.pool.slices import Slice, SliceShape


def composition_to_json(comp: Composition) -> dict[str, Any]:
    data = dataclasses.asdict(comp)
    for item in data["slices"]:
        item["shape"] = str(item["shape"])
    data["slices"] = list(data["slices"])
    data["cores"] = list(comp.cores)
    data["numa_nodes"] = list(comp.numa_nodes)
    return data


def composition_from_json(data: dict[str, Any]) -> Composition:
    slices = tuple(
        Slice(**{**item, "shape": SliceShape(item["shape"])}) for item in data.get("slices", ())
    )
    staging = None
    if data.get("staging"):
        fields = dict(data["staging"])
        fields["evict"] = tuple(fields.get("evict", ()))
        staging = Staging(**fields)
    return Composition(
        job_id=data["job_id"],
        node=data["node"],
        slices=slices,
        cores=tuple(data.get("cores", ())),
        memory_gib=float(data["memory_gib"]),
        numa_nodes=tuple(data.get("numa_nodes", ())),
        data_path=data.get("data_path"),
        staging=staging,
    )

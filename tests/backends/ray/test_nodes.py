"""The pool node an agent reports: discovery cut to what Ray declares (no cluster needed)."""

from __future__ import annotations

import pytest

from slicebox.backends.ray.nodes import GIB, limit_to_declared, node_name
from slicebox.pool.model import Device, Link, Node

FOUND = Node("host", ((0, (0, 1, 2, 3)), (1, (4, 5, 6, 7))), 64.0,
             (Device(0, "L4", "GPU-a", 0), Device(1, "L4", "GPU-b", 1)),
             links=((Link.SELF, Link.SYS), (Link.SYS, Link.SELF)))


def test_cores_are_the_first_n_where_ray_declares_n_cpus():
    node = limit_to_declared(FOUND, "n", {"CPU": 6, "memory": 8 * GIB})
    assert node.cores_by_numa == ((0, (0, 1, 2, 3)), (1, (4, 5)))
    assert node.memory_gib == 8.0 and node.name == "n"
    assert node.devices == ()  # Ray declares no GPU: none is offered


def test_gpus_are_capped_at_rays_count_and_memory_at_the_machines():
    node = limit_to_declared(FOUND, "n", {"CPU": 64, "GPU": 1, "memory": 500 * GIB})
    assert node.cores == FOUND.cores
    assert [d.uuid for d in node.devices] == ["GPU-a"] and node.links == ((Link.SELF,),)
    assert node.memory_gib == 64.0


@pytest.mark.parametrize(("labels", "name"), [
    ({"slicebox/name": "gpu-1"}, "gpu-1"),
    ({}, "ray-0123abcd"),
    ({"slicebox/name": "../etc"}, "ray-0123abcd"),  # not a plain name: not used
    ({"slicebox/name": "a" * 64}, "ray-0123abcd"),
    ({"slicebox/name": "x y"}, "ray-0123abcd"),
])
def test_the_node_is_named_by_its_label_when_that_is_a_plain_name(labels, name):
    assert node_name("0123abcd" + "f" * 48, labels) == name

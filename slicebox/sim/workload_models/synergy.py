"""How jobs speed up with CPU cores and memory (Synergy, OSDI'22).

`synergy/cpu_mem_sensitivity.json` holds, per model configuration ('res18_1' =
ResNet-18 on 1 GPU), a grid of relative throughput over CPU cores x memory (GB), both
per GPU (Synergy sizes a job's demand as GPUs x per-GPU cores and memory), and the
profiled best allocation. 1.0 is the GPU-proportional share of Synergy's servers
(3 cores and 62.5 GB per GPU).

Two details of the file, read from msr-fiddle/synergy `simulator/models/*.py`:
multi-GPU grids have 4 memory columns, without the 20.83 GB one of the 1-GPU grids
(so they start at 62.5 GB), and their rows of 0 are core counts the 24-core server
could not give that many GPUs; they are not measurements, so a request past the
last measured row gets that row's value.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

import numpy as np

from slicebox.sim.traces import paths
from slicebox.sim.workload_models import errors

DEFAULT_FILE = "synergy/cpu_mem_sensitivity.json"
# Synergy's fair share per GPU (`Model.use_default_scores`: 500 GB / 8 GPUs), also
# what it assumes for models whose profile gives no memory.
DEFAULT_MEMORY_GB_PER_GPU = 62.5


@dataclasses.dataclass(frozen=True, slots=True)
class SynergyProfile:
    """One model configuration's profiled best allocation, per GPU.

    Attributes:
        name: configuration key, '<model>_<gpus>' (e.g. 'res50_4').
        gpus: GPUs of the configuration.
        cpus: best CPU cores per GPU.
        memory_gb: best memory per GPU (Synergy's default where unprofiled).
        speedup: relative throughput at that allocation.
        iter_time: seconds per iteration at the proportional share.
        batch_size: the profiled batch size.
    """

    name: str
    gpus: int
    cpus: float
    memory_gb: float
    speedup: float
    iter_time: float
    batch_size: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Grid:
    cpus: np.ndarray  # ascending, measured rows only
    memory_gb: np.ndarray  # ascending
    tput: np.ndarray  # len(cpus) x len(memory_gb)


class SynergySensitivity:
    """Relative throughput of a model at a CPU/memory allocation, and its defaults."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = pathlib.Path(path) if path is not None else paths.trace_path(DEFAULT_FILE)
        where = str(self.path)
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            cpu_axis = np.array(raw["axes"]["rows_cpu_cores"], dtype=float)
            memory_axis = np.array(raw["axes"]["cols_memory_gb"], dtype=float)
            models = raw["models"]
        except json.JSONDecodeError as exc:
            raise errors.ProfileDataError(where, f"not valid JSON: {exc}") from None
        except (KeyError, TypeError) as exc:
            raise errors.ProfileDataError(
                where, f"missing {exc} (expected axes and models)"
            ) from None
        self._grids: dict[str, _Grid] = {}
        self._profiles: dict[str, SynergyProfile] = {}
        for name, entry in models.items():
            self._grids[name] = _grid(where, name, entry["tput"], cpu_axis, memory_axis)
            self._profiles[name] = SynergyProfile(
                name=name,
                gpus=int(entry["gpus"]),
                cpus=float(entry["cpus"]),
                memory_gb=float(entry.get("mem", DEFAULT_MEMORY_GB_PER_GPU)),
                speedup=float(entry["speedup"]),
                iter_time=float(entry["iter_time"]),
                batch_size=int(entry["batch"]),
            )

    def models(self) -> tuple[str, ...]:
        """Configuration keys ('alexnet_1', ..., 'vae_1')."""
        return tuple(sorted(self._grids))

    def config_for(self, model: str, gpus: int = 1) -> str:
        """The configuration key for `model` on `gpus` GPUs: '<model>_<gpus>' where
        profiled, else '<model>_1' (Synergy's simulator uses the 1-GPU grid for
        every GPU count); an exact key passes through."""
        if model in self._grids:
            return model
        for candidate in (f"{model}_{gpus}", f"{model}_1"):
            if candidate in self._grids:
                return candidate
        bases = {name.rsplit("_", 1)[0] for name in self._grids}
        raise errors.UnknownNameError("Synergy model", model, bases | set(self._grids))

    def profile(self, model: str, gpus: int = 1) -> SynergyProfile:
        """The profiled best allocation (per GPU) and its speed-up."""
        return self._profiles[self.config_for(model, gpus)]

    def speedup(
        self, model: str, cpus_per_gpu: float, memory_gb_per_gpu: float, gpus: int = 1
    ) -> float:
        """Relative throughput with `cpus_per_gpu` cores and `memory_gb_per_gpu` GB.

        Bilinear interpolation between the four grid points around the request; a
        request outside the grid is clamped to its edge (fewer cores than profiled
        gets the smallest measurement, more gets the largest).
        """
        grid = self._grids[self.config_for(model, gpus)]
        return _bilinear(grid, cpus_per_gpu, memory_gb_per_gpu)


def _grid(
    where: str, name: str, tput: list[list[float]], cpu_axis: np.ndarray, memory_axis: np.ndarray
) -> _Grid:
    table = np.array(tput, dtype=float)
    if table.ndim != 2 or table.shape[0] != len(cpu_axis):
        raise errors.ProfileDataError(where, f"{name}: tput is not {len(cpu_axis)} rows")
    columns = table.shape[1]
    if columns == len(memory_axis):
        memory = memory_axis
    elif columns == len(memory_axis) - 1:
        memory = memory_axis[1:]  # multi-GPU grids omit the smallest memory column
    else:
        raise errors.ProfileDataError(where, f"{name}: tput has {columns} columns")
    measured = ~np.all(table == 0.0, axis=1)
    last = int(np.nonzero(measured)[0][-1]) + 1 if measured.any() else 0
    if last < 2:
        raise errors.ProfileDataError(where, f"{name}: fewer than 2 measured rows")
    return _Grid(cpu_axis[:last], memory, table[:last])


def _bilinear(grid: _Grid, cpus: float, memory_gb: float) -> float:
    row, row_weight = _bracket(grid.cpus, cpus)
    column, column_weight = _bracket(grid.memory_gb, memory_gb)
    t = grid.tput
    top = t[row, column] * (1 - column_weight) + t[row, column + 1] * column_weight
    bottom = t[row + 1, column] * (1 - column_weight) + t[row + 1, column + 1] * column_weight
    return float(top * (1 - row_weight) + bottom * row_weight)


def _bracket(axis: np.ndarray, value: float) -> tuple[int, float]:
    """Index i and weight w so that value = axis[i] * (1 - w) + axis[i + 1] * w,
    with value clamped to the axis (which has at least two points)."""
    clamped = min(max(value, float(axis[0])), float(axis[-1]))
    index = int(np.searchsorted(axis, clamped, side="right")) - 1
    index = min(index, len(axis) - 2)
    return index, (clamped - float(axis[index])) / float(axis[index + 1] - axis[index])

"""Gavel's measured throughputs (`gavel/simulation_throughputs.json`).

The file maps GPU type -> "('<job type>', <scale factor>)" -> either `"null"` (the
job alone, steps/s) or another such key (the two co-located on the same GPUs:
`[steps/s of the first, steps/s of the second]`). Gavel measured co-location only
between jobs of the same scale factor; a pair it did not measure is an error here,
not a guess. A measured 0.0 means the pair did not fit together (out of memory).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import pathlib

from slicebox.sim.traces import paths
from slicebox.sim.workload_models import errors

DEFAULT_FILE = "gavel/simulation_throughputs.json"
GPU_TYPES = ("k80", "p100", "v100")
# Gavel also measured multi-GPU jobs spread over several servers; those tables carry
# this suffix and are asked for with `consolidated=False`.
_UNCONSOLIDATED = "_unconsolidated"

JobKey = tuple[str, int]


@dataclasses.dataclass(frozen=True, slots=True)
class _Measurements:
    alone: dict[JobKey, float]
    together: dict[tuple[JobKey, JobKey], tuple[float, float]]


class GavelThroughputs:
    """Steps/s of Gavel's job types on K80/P100/V100, alone and co-located."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = pathlib.Path(path) if path is not None else paths.trace_path(DEFAULT_FILE)
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise errors.ProfileDataError(str(self.path), f"not valid JSON: {exc}") from None
        self._tables = {gpu: _parse_table(str(self.path), gpu, table) for gpu, table in raw.items()}
        kinds = [gpu for gpu in self._tables if not gpu.endswith(_UNCONSOLIDATED)]
        self._gpu_types = tuple(sorted(kinds))
        self._job_types = tuple(sorted({key[0] for t in self._tables.values() for key in t.alone}))

    def gpu_types(self) -> tuple[str, ...]:
        """The GPU types measured ('k80', 'p100', 'v100')."""
        return self._gpu_types

    def job_types(self) -> tuple[str, ...]:
        """Every job type measured on some GPU type, e.g. 'ResNet-50 (batch size 64)'."""
        return self._job_types

    def scale_factors(self, job_type: str, gpu_type: str = "v100") -> tuple[int, ...]:
        """The scale factors (GPUs per job) measured for a job type on a GPU type."""
        table = self._table(gpu_type, consolidated=True)
        self._check_job_type(job_type)
        return tuple(sorted(sf for name, sf in table.alone if name == job_type))

    def throughput(
        self, job_type: str, scale_factor: int, gpu_type: str, consolidated: bool = True
    ) -> float:
        """Steps/s of the whole job (all `scale_factor` GPUs) running alone."""
        table = self._table(gpu_type, consolidated)
        key = (job_type, scale_factor)
        value = table.alone.get(key)
        if value is None:
            self._check_job_type(job_type)
            raise errors.UnknownNameError(
                f"scale factor of {job_type!r} on {gpu_type}",
                scale_factor,
                sorted(sf for name, sf in table.alone if name == job_type),
            )
        return value

    def colocated(
        self,
        job_type_a: str,
        scale_factor_a: int,
        job_type_b: str,
        scale_factor_b: int,
        gpu_type: str,
        consolidated: bool = True,
    ) -> tuple[float, float]:
        """Steps/s of job a and job b when they share the same GPUs.

        (0.0, 0.0) is Gavel's measurement for a pair that does not fit together.
        """
        table = self._table(gpu_type, consolidated)
        a, b = (job_type_a, scale_factor_a), (job_type_b, scale_factor_b)
        pair = table.together.get((a, b))
        if pair is not None:
            return pair
        for job_type, scale_factor in (a, b):
            self.throughput(job_type, scale_factor, gpu_type, consolidated)  # names the bad one
        raise errors.UnknownNameError(
            f"co-location partner of {a} on {gpu_type} (Gavel measured pairs of equal "
            "scale factor only)",
            b,
            sorted({str(other) for first, other in table.together if first == a}),
        )

    def _table(self, gpu_type: str, consolidated: bool) -> _Measurements:
        name = gpu_type.lower() + ("" if consolidated else _UNCONSOLIDATED)
        table = self._tables.get(name)
        if table is None:
            raise errors.UnknownNameError("Gavel GPU type", gpu_type, self._gpu_types)
        return table

    def _check_job_type(self, job_type: str) -> None:
        if job_type not in self._job_types:
            raise errors.UnknownNameError("Gavel job type", job_type, self._job_types)


def _parse_table(path: str, gpu: str, table: dict[str, object]) -> _Measurements:
    alone: dict[JobKey, float] = {}
    together: dict[tuple[JobKey, JobKey], tuple[float, float]] = {}
    for key_text, entries in table.items():
        key = _parse_key(path, key_text)
        if not isinstance(entries, dict):
            raise errors.ProfileDataError(path, f"{gpu} {key_text}: expected an object")
        for other_text, value in entries.items():
            if other_text == "null":
                alone[key] = float(value)
            else:
                first, second = value
                together[(key, _parse_key(path, other_text))] = (float(first), float(second))
    return _Measurements(alone, together)


def _parse_key(path: str, text: str) -> JobKey:
    # Keys are Python tuple reprs; literal_eval reads them without running code.
    try:
        job_type, scale_factor = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError):
        raise errors.ProfileDataError(path, f"key {text!r} is not ('job type', scale)") from None
    return str(job_type), int(scale_factor)

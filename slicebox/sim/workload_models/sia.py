"""Measured speed of the Pollux/Sia applications per GPU type (`sia-profiles/`).

For each application and GPU type: `placements-<type>.csv` (step and sync time per
placement and per-GPU batch size) and `scalability-<type>.csv` (the same for larger
node and replica counts). The interpolation follows Sia's simulator
(siasosp23/artifacts `sia-simulator/applications.py`, `Application.get_throughput`
and `get_throughput_with_accum`) so that simulated job times match its published ones:

- a placement it profiled: linear interpolation over the per-GPU batch size, and
  nothing outside the profiled batch sizes;
- any other placement: linear interpolation over (nodes, replicas, per-GPU batch)
  on the Delaunay triangulation of the profiled points (per-placement means, then
  the scalability rows), and nothing outside their convex hull.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from scipy import interpolate

from slicebox.sim.traces import csvrows, paths
from slicebox.sim.workload_models import errors, sia_apps

DEFAULT_DIR = "sia-profiles"
_PLACEMENT_COLUMNS = ("placement", "local_bsz", "step_time", "sync_time")
_SCALABILITY_COLUMNS = ("num_nodes", "num_replicas", "local_bsz", "step_time", "sync_time")
_VALIDATION_COLUMNS = ("grad_sqr", "grad_var")


@dataclasses.dataclass(frozen=True, slots=True)
class StepTime:
    """Seconds of one step at a per-GPU batch size, and how much of it is gradient sync.

    With gradient accumulation a step of `k` micro-batches takes
    `step + (k - 1) * (step - sync)`: only the last one synchronises.
    """

    step: float
    sync: float


@dataclasses.dataclass(frozen=True, slots=True)
class _PlacementCurve:
    local_bsz: np.ndarray  # sorted ascending
    step: np.ndarray
    sync: np.ndarray


class _Profile:
    """One application on one GPU type: the profiled points and their interpolators."""

    def __init__(self, directory: pathlib.Path, gpu_type: str) -> None:
        self.curves = _read_placements(directory / f"placements-{gpu_type}.csv")
        self.scalability = _read_scalability(directory / f"scalability-{gpu_type}.csv")
        self.min_local_bsz = min(float(c.local_bsz[0]) for c in self.curves.values())
        self.max_local_bsz = max(float(c.local_bsz[-1]) for c in self.curves.values())
        self._nd: interpolate.LinearNDInterpolator | None = None
        self._nd_cache: dict[tuple[int, int, float], StepTime | None] = {}

    def step_time(self, placement: tuple[int, ...], local_bsz: float) -> StepTime | None:
        curve = self.curves.get(_placement_id(placement))
        if curve is not None:
            if not curve.local_bsz[0] <= local_bsz <= curve.local_bsz[-1]:
                return None
            return StepTime(
                float(np.interp(local_bsz, curve.local_bsz, curve.step)),
                float(np.interp(local_bsz, curve.local_bsz, curve.sync)),
            )
        num_nodes = min(len(placement), sia_apps.MAX_INTERPOLATED_NODES)
        key = (num_nodes, sum(placement), float(local_bsz))
        if key not in self._nd_cache:
            self.prefetch(placement, [local_bsz])
        return self._nd_cache[key]

    def prefetch(self, placement: tuple[int, ...], local_bszs: Sequence[float]) -> None:
        """Interpolate many per-GPU batch sizes of an unprofiled placement in one call
        (one Delaunay lookup per call is what costs; the answers are remembered)."""
        if self.curves.get(_placement_id(placement)) is not None:
            return
        num_nodes = min(len(placement), sia_apps.MAX_INTERPOLATED_NODES)
        replicas = sum(placement)
        todo = sorted({float(b) for b in local_bszs} -
                      {k[2] for k in self._nd_cache if k[:2] == (num_nodes, replicas)})
        if not todo:
            return
        points = np.array([[num_nodes, replicas, b] for b in todo], dtype=float)
        for b, (step, sync) in zip(todo, self._interpolator()(points), strict=True):
            self._nd_cache[(num_nodes, replicas, b)] = (
                None if math.isnan(step) or math.isnan(sync)
                else StepTime(float(step), float(sync)))

    def max_local_bsz_for(self, placement: tuple[int, ...]) -> float | None:
        # Sia's get_max_local_bsz: the placement's own largest profiled batch, else
        # the largest among scalability rows at least as big in nodes and replicas.
        curve = self.curves.get(_placement_id(placement))
        if curve is not None:
            return float(curve.local_bsz[-1])
        rows = self.scalability
        nodes, replicas = len(placement), sum(placement)
        fits = rows[(rows[:, 0] >= nodes) & (rows[:, 1] >= replicas)]
        return float(fits[:, 2].max()) if len(fits) else None

    def _interpolator(self) -> interpolate.LinearNDInterpolator:
        if self._nd is None:
            # Same points in the same order as Sia (groupby-mean of the placements,
            # sorted by key, then the scalability rows), so that Qhull resolves
            # duplicate points the same way.
            grouped: dict[tuple[float, float, float], list[tuple[float, float]]] = {}
            for placement_id, curve in self.curves.items():
                digits = str(placement_id)
                key_nodes, key_replicas = float(len(digits)), float(sum(map(int, digits)))
                for bsz, step, sync in zip(curve.local_bsz, curve.step, curve.sync, strict=True):
                    grouped.setdefault((key_nodes, key_replicas, float(bsz)), []).append(
                        (float(step), float(sync))
                    )
            keys = sorted(grouped)
            means = [np.mean(grouped[key], axis=0) for key in keys]
            points = np.vstack([np.array(keys), self.scalability[:, :3]])
            values = np.vstack([np.array(means), self.scalability[:, 3:]])
            self._nd = interpolate.LinearNDInterpolator(points, values)
        return self._nd


@dataclasses.dataclass(frozen=True, slots=True)
class _Validation:
    """Per validated batch size: gradient statistics per epoch (for efficiency)."""

    batch_sizes: tuple[int, ...]  # ascending
    grad_sqr: dict[int, np.ndarray]
    grad_var: dict[int, np.ndarray]


class SiaProfiles:
    """Step times and samples/s of the six Pollux/Sia applications on Sia's GPU types.

    GPU types: 'aws' (T4), 'azure' (V100), 'dgx' / 'dgx-ext' (A100-40GB), 'quad'
    (Quadro RTX 6000), 'rtx' (2080Ti). Files are read on first use of an
    (application, GPU type) pair and answers are cached, so a simulator may call
    `samples_per_second` every event.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None, calibrate: bool = True) -> None:
        """`calibrate` divides throughput by Sia's per-application `slowdown`, as
        Sia's simulator does to match its real-cluster runs."""
        self.root = pathlib.Path(root) if root is not None else paths.trace_path(DEFAULT_DIR)
        self.calibrate = calibrate
        self._profiles: dict[tuple[str, str], _Profile] = {}
        self._validations: dict[str, _Validation] = {}
        self._speeds: dict[tuple[str, str, int, int, tuple[int, ...] | None], float | None] = {}
        self._tables: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # -- what exists -------------------------------------------------------------

    def applications(self) -> tuple[str, ...]:
        """Applications with both Sia's constants and profile files."""
        return tuple(app for app in sorted(sia_apps.APPLICATIONS) if (self.root / app).is_dir())

    def gpu_types(self, app: str) -> tuple[str, ...]:
        """GPU types with a placements and a scalability file for `app`."""
        directory = self._app_dir(app)
        found = []
        for path in sorted(directory.glob("placements-*.csv")):
            gpu_type = path.stem.removeprefix("placements-")
            if (directory / f"scalability-{gpu_type}.csv").is_file():
                found.append(gpu_type)
        return tuple(found)

    def application(self, app: str) -> sia_apps.SiaApplication:
        """Sia's recipe for `app`: epochs, dataset size, restart cost, calibration."""
        recipe = sia_apps.APPLICATIONS.get(app)
        if recipe is None:
            raise errors.UnknownNameError("Sia application", app, sia_apps.APPLICATIONS)
        return recipe

    def validated_batch_sizes(self, app: str) -> tuple[int, ...]:
        """Global batch sizes Sia validated `app` at, ascending: the range `efficiency`
        answers for; the smallest is the batch size progress is counted in."""
        return self._validation(app).batch_sizes

    def total_samples(self, app: str) -> int:
        """Samples a job of `app` processes to finish: max_epochs x dataset size."""
        return self.application(app).total_samples

    def rescale_time(self, app: str) -> float:
        """Seconds Sia charges `app` for a checkpoint-restart on re-allocation."""
        return self.application(app).rescale_time

    @staticmethod
    def gpus_per_node(gpu_type: str) -> int:
        """GPUs per node of a Sia GPU type (4 for 'aws' and 'quad', else 8)."""
        count = sia_apps.GPUS_PER_NODE.get(gpu_type)
        if count is None:
            raise errors.UnknownNameError("Sia GPU type", gpu_type, sia_apps.GPUS_PER_NODE)
        return count

    # -- speed ---------------------------------------------------------------------

    def step_time(
        self, app: str, gpu_type: str, placement: Sequence[int], local_bsz: float
    ) -> StepTime | None:
        """Step time at `local_bsz` samples per GPU on `placement` (GPUs per node).

        None where Sia has no data to interpolate from (a batch size outside the
        profiled range, or a shape outside the profiled hull): the job cannot be
        simulated in that shape.
        """
        return self._profile(app, gpu_type).step_time(_normalise(placement), local_bsz)

    def step_time_spread(
        self, app: str, gpu_type: str, num_replicas: int, num_nodes: int, local_bsz: float
    ) -> StepTime | None:
        """`step_time` with `num_replicas` GPUs spread as evenly as possible over
        `num_nodes` nodes (e.g. 6 over 2 -> 3 + 3)."""
        return self.step_time(app, gpu_type, even_placement(num_replicas, num_nodes), local_bsz)

    def packed_placement(self, gpu_type: str, num_gpus: int) -> tuple[int, ...]:
        """Full nodes first, the remainder on one more node: how Sia places a rigid
        job of `num_gpus` (`Job.get_throughputs`)."""
        per_node = self.gpus_per_node(gpu_type)
        if num_gpus < 1:
            raise ValueError(f"num_gpus must be >= 1, got {num_gpus}")
        full, rest = divmod(num_gpus, per_node)
        return (per_node,) * full + ((rest,) if rest else ())

    def samples_per_second(
        self,
        app: str,
        gpu_type: str,
        num_gpus: int,
        batch_size: int,
        placement: Sequence[int] | None = None,
    ) -> float | None:
        """Samples/s of a job training at global `batch_size` on `num_gpus` GPUs.

        Sia's `get_throughput_with_accum`: the per-GPU batch is split into
        gradient-accumulation steps where it exceeds the largest profiled one, and
        the result is divided by the application's `slowdown` when calibrating.
        `placement` defaults to `packed_placement`. None where the shape cannot run.
        Answers are cached.
        """
        key = (app, gpu_type, num_gpus, batch_size, tuple(placement) if placement else None)
        if key not in self._speeds:
            self._speeds[key] = self._samples_per_second(*key)
        return self._speeds[key]

    def efficiency(self, app: str, batch_size: float, epoch: int) -> float:
        """Statistical efficiency of `batch_size` in `epoch`, in (0, 1]: useful samples
        per processed sample, relative to the smallest validated batch size.

        Pollux's gain `(var + sqr) / (var / scale + sqr)` divided by `scale`, with
        gradient statistics interpolated between validated batch sizes as Sia does
        (`get_grad_stats`). Multiply `samples_per_second` by it to get progress in
        samples of `total_samples`, which is how Sia's simulator advances a job.
        """
        validation = self._validation(app)
        sizes = validation.batch_sizes
        if not sizes[0] <= batch_size <= sizes[-1]:
            raise ValueError(
                f"{app}: batch size {batch_size} outside the validated {sizes[0]}..{sizes[-1]}"
            )
        epochs = len(validation.grad_sqr[sizes[0]])
        if not 0 <= epoch < epochs:
            raise ValueError(f"{app}: epoch {epoch} outside 0..{epochs - 1}")
        sqr, var = _interpolate_grad_stats(validation, batch_size, epoch)
        scale = batch_size / sizes[0]
        gain = (var + sqr) / (var / scale + sqr)
        return gain / scale

    def efficiencies(self, app: str, batch_sizes: np.ndarray, epoch: int) -> np.ndarray:
        """`efficiency` for many batch sizes at once (same formula, vectorised): the
        elastic simulator weighs a dozen candidate batch sizes per allocation."""
        sizes, sqr_table, var_table = self._grad_tables(app)
        epoch = min(max(epoch, 0), len(sqr_table) - 1)
        sqr_at, var_at = sqr_table[epoch], var_table[epoch]
        batches = np.clip(np.asarray(batch_sizes, dtype=float), sizes[0], sizes[-1])
        sqr = np.interp(batches, sizes, sqr_at)
        var = np.interp(batches, sizes, var_at)
        scale = batches / sizes[0]
        return (var + sqr) / (var / scale + sqr) / scale

    def _grad_tables(self, app: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validated sizes, and grad_sqr / grad_var as (epoch x size) matrices."""
        tables = self._tables.get(app)
        if tables is None:
            validation = self._validation(app)
            sizes = validation.batch_sizes
            epochs = min(len(validation.grad_sqr[b]) for b in sizes)
            tables = (np.asarray(sizes, dtype=float),
                      np.array([[validation.grad_sqr[b][e] for b in sizes]
                                for e in range(epochs)]),
                      np.array([[validation.grad_var[b][e] for b in sizes]
                                for e in range(epochs)]))
            self._tables[app] = tables
        return tables

    def min_local_bsz(self, app: str, gpu_type: str) -> float:
        """Smallest per-GPU batch Sia profiled `app` at on `gpu_type` (its
        `min_local_bsz`: no replica runs a smaller one)."""
        return self._profile(app, gpu_type).min_local_bsz

    def single_gpu_throughput(self, app: str, gpu_type: str) -> float | None:
        """Sia's crude per-type speed of `app` (`Cluster.compute_throughputs`): the
        largest profiled batch over the longest step time on one GPU. Its ratios between
        types are what Sia's policy projects goodput with onto types a job has not run on."""
        curve = self._profile(app, gpu_type).curves.get(1)
        if curve is None:
            return None
        return float(curve.local_bsz[-1] / curve.step.max())

    def epochs(self, app: str) -> int:
        """Epochs with gradient statistics (efficiency answers for 0..epochs-1)."""
        validation = self._validation(app)
        return len(validation.grad_sqr[validation.batch_sizes[0]])

    # -- internals -----------------------------------------------------------------

    def _samples_per_second(
        self,
        app: str,
        gpu_type: str,
        num_gpus: int,
        batch_size: int,
        placement: tuple[int, ...] | None,
    ) -> float | None:
        recipe = self.application(app)
        shape = _normalise(placement or self.packed_placement(gpu_type, num_gpus))
        profile = self._profile(app, gpu_type)
        split = self._split(app, profile, shape, num_gpus, batch_size)
        if split is None:
            return None
        atomic_bsz, accum_steps = split
        timing = profile.step_time(shape, atomic_bsz)
        if timing is None:
            return None
        seconds = timing.step + (timing.step - timing.sync) * accum_steps
        if seconds <= 0:
            return None
        speed = batch_size / seconds
        return speed / recipe.slowdown if self.calibrate else speed

    def _split(self, app: str, profile: _Profile, shape: tuple[int, ...], num_gpus: int,
               batch_size: int) -> tuple[int, int] | None:
        """(per-GPU micro-batch, extra accumulation steps) of a global batch size on a
        shape, as Sia's `get_throughput_with_accum` splits it; None without data."""
        if sum(shape) != num_gpus:
            raise ValueError(f"placement {shape} holds {sum(shape)} GPUs, not {num_gpus}")
        validation = self._validation(app)
        init_batch, max_batch = validation.batch_sizes[0], validation.batch_sizes[-1]
        local_bsz = math.ceil(batch_size / num_gpus - 1e-8)
        max_local = profile.max_local_bsz_for(shape)
        if max_local is None:
            return None
        accum_steps = math.ceil(local_bsz / max_local - 1e-8) - 1
        if num_gpus == 1 and batch_size > init_batch:
            # Sia always accumulates at least once for a single GPU above the initial
            # batch size; kept so that times match its simulator.
            accum_steps = max(1, accum_steps)
        atomic_bsz = math.ceil(local_bsz / (accum_steps + 1) - 1e-8)
        atomic_bsz = min(atomic_bsz, int(max_batch / (num_gpus * (accum_steps + 1))))
        return atomic_bsz, accum_steps

    def prefetch(self, app: str, gpu_type: str, num_gpus: int, batch_sizes: Sequence[int],
                 placement: Sequence[int] | None = None) -> None:
        """Step times of many global batch sizes on one shape in one interpolation (for
        callers about to ask `samples_per_second` for each)."""
        shape = _normalise(placement or self.packed_placement(gpu_type, num_gpus))
        profile = self._profile(app, gpu_type)
        atomics = []
        for batch in batch_sizes:
            split = self._split(app, profile, shape, num_gpus, int(batch))
            if split is not None:
                atomics.append(float(split[0]))
        profile.prefetch(shape, atomics)

    def _app_dir(self, app: str) -> pathlib.Path:
        self.application(app)
        directory = self.root / app
        if not directory.is_dir():
            raise errors.UnknownNameError("Sia application", app, self.applications())
        return directory

    def _profile(self, app: str, gpu_type: str) -> _Profile:
        profile = self._profiles.get((app, gpu_type))
        if profile is None:
            directory = self._app_dir(app)
            if gpu_type not in self.gpu_types(app):
                raise errors.UnknownNameError(f"GPU type for {app}", gpu_type, self.gpu_types(app))
            profile = _Profile(directory, gpu_type)
            self._profiles[(app, gpu_type)] = profile
        return profile

    def _validation(self, app: str) -> _Validation:
        validation = self._validations.get(app)
        if validation is None:
            validation = _read_validation(self._app_dir(app))
            self._validations[app] = validation
        return validation


def even_placement(num_replicas: int, num_nodes: int) -> tuple[int, ...]:
    """`num_replicas` over `num_nodes` nodes, differing by at most one per node."""
    if num_nodes < 1 or num_replicas < num_nodes:
        raise ValueError(f"cannot spread {num_replicas} replicas over {num_nodes} nodes")
    base, extra = divmod(num_replicas, num_nodes)
    return (base + 1,) * extra + (base,) * (num_nodes - extra)


def _normalise(placement: Sequence[int]) -> tuple[int, ...]:
    # Sia keys placements by their lexicographically smallest rotation, without
    # empty nodes: (2, 1) and (1, 2) are the same profile entry "12".
    shape = tuple(int(count) for count in placement if count)
    if not shape or min(shape) < 0:
        raise ValueError(f"placement {tuple(placement)} has no GPUs")
    return min(shape[i:] + shape[:i] for i in range(len(shape)))


def _placement_id(placement: tuple[int, ...]) -> int:
    return int("".join(map(str, placement)))


def _interpolate_grad_stats(
    validation: _Validation, batch_size: float, epoch: int
) -> tuple[float, float]:
    sizes = validation.batch_sizes
    lower = max(size for size in sizes if size <= batch_size)
    upper = min(size for size in sizes if size >= batch_size)
    low_sqr, low_var = validation.grad_sqr[lower][epoch], validation.grad_var[lower][epoch]
    if lower == upper:
        return float(low_sqr), float(low_var)
    up_sqr, up_var = validation.grad_sqr[upper][epoch], validation.grad_var[upper][epoch]
    weight = (batch_size - lower) / (upper - lower)
    return (
        float(low_sqr + weight * (up_sqr - low_sqr)),
        float(low_var + weight * (up_var - low_var)),
    )


def _read_columns(path: pathlib.Path, columns: Sequence[str]) -> np.ndarray:
    """The named columns of a profile CSV as a float matrix (column order varies
    between Sia's files, so always by name)."""
    errors_seen = csvrows.LineErrors(str(path), skip_bad_lines=False)
    with csvrows.open_table(path, columns, errors_seen) as table:
        positions = [table.columns[column] for column in columns]

        def convert(row: csvrows.Row) -> list[float]:
            return [
                csvrows.parse_float(row.fields[i], name)
                for i, name in zip(positions, columns, strict=True)
            ]

        return np.array(csvrows.convert_rows(table.rows, convert, errors_seen), dtype=float)


def _read_placements(path: pathlib.Path) -> dict[int, _PlacementCurve]:
    data = _read_columns(path, _PLACEMENT_COLUMNS)
    curves: dict[int, _PlacementCurve] = {}
    for placement_id in np.unique(data[:, 0]):
        rows = data[data[:, 0] == placement_id]
        rows = rows[np.argsort(rows[:, 1], kind="stable")]
        curves[int(placement_id)] = _PlacementCurve(rows[:, 1], rows[:, 2], rows[:, 3])
    return curves


def _read_scalability(path: pathlib.Path) -> np.ndarray:
    return _read_columns(path, _SCALABILITY_COLUMNS)


def _read_validation(directory: pathlib.Path) -> _Validation:
    grad_sqr: dict[int, np.ndarray] = {}
    grad_var: dict[int, np.ndarray] = {}
    for path in directory.glob("validation-*.csv"):
        batch_size = int(path.stem.removeprefix("validation-"))
        data = _read_columns(path, _VALIDATION_COLUMNS)
        grad_sqr[batch_size], grad_var[batch_size] = data[:, 0], data[:, 1]
    if not grad_sqr:
        raise errors.ProfileDataError(str(directory), "no validation-<batch size>.csv files")
    return _Validation(tuple(sorted(grad_sqr)), grad_sqr, grad_var)

"""Data-parallel training across processes: one rank of a gang, with torch.distributed.

A reference workload runs as one rank of a gang when its environment says so, the way
``torchrun`` and Slicebox's gang launcher (``slicebox.backends.env.rank_environment``) spell
it: ``WORLD_SIZE`` > 1, ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``. Without them (or with
``WORLD_SIZE=1``) nothing here runs and the workload is the single process it always was.

What a gang agrees on, so that every rank runs the same collectives in the same order:

- the model: DistributedDataParallel averages gradients; rank 0's initial weights win;
- the data: every rank draws the same order from the same seeded generator and trains on
  its share of each global batch (the global batch is the configured one, whatever the
  gang's size, so a checkpoint resumes on any size);
- when to stop: the evaluation's counts are summed over the ranks, so every rank sees the
  same quality; the time limit, a checkpoint and the checkpoint signal are decided once
  for all ranks (:meth:`Gang.any`);
- checkpoints: rank 0 saves for the gang (all ranks hold the same model) and every rank
  loads what rank 0 restores (:meth:`Gang.share`), so ranks need no shared disk.

Only rank 0 prints ``:::SLICEBOX`` / ``:::MLLOG`` lines; other ranks drop them (they are
rank 0's, by construction) and prefix what else they print with ``[rank N]``.

Gloo's collectives have a timeout (``SLICEBOX_GANG_TIMEOUT_S``, default 120 s), and a peer
whose process ends closes its sockets at once: a rank that loses a peer fails with
:class:`GangError` instead of waiting for ever.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, TextIO

import torch
from torch import distributed as dist
from torch import nn

from slicebox.errors import SliceboxError

TIMEOUT_ENV: Final = "SLICEBOX_GANG_TIMEOUT_S"
DEFAULT_TIMEOUT_S: Final = 120.0
MAX_TIMEOUT_S: Final = 24 * 3600.0
MAX_WORLD_SIZE: Final = 65536
MACHINE_LINES: Final = (":::SLICEBOX", ":::MLLOG")


class GangError(SliceboxError):
    """This rank cannot train with its gang: a variable is wrong, or a peer was lost."""


def _int_env(environ: Mapping[str, str], name: str, low: int, high: int) -> int:
    text = environ.get(name, "")
    try:
        value = int(text)
    except ValueError:
        raise GangError(f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise GangError(f"{name} must be in {low}..{high}, got {value}")
    return value


def _timeout(environ: Mapping[str, str]) -> float:
    text = environ.get(TIMEOUT_ENV)
    if text is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        raise GangError(f"{TIMEOUT_ENV} must be a number of seconds, got {text!r}") from None
    if not 1.0 <= value <= MAX_TIMEOUT_S:
        raise GangError(f"{TIMEOUT_ENV} must be in 1..{MAX_TIMEOUT_S:g} s, got {text}")
    return value


def rank_from_env(environ: Mapping[str, str] = os.environ) -> tuple[int, int] | None:
    """(rank, world size) when this process is one rank of a gang of two or more; None when
    it runs alone. Raises :class:`GangError` naming a variable that is set but wrong."""
    if not environ.get("WORLD_SIZE"):
        return None
    world_size = _int_env(environ, "WORLD_SIZE", 1, MAX_WORLD_SIZE)
    if world_size == 1:
        return None
    rank = _int_env(environ, "RANK", 0, world_size - 1)
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not environ.get(name):
            raise GangError(f"{name} is not set: rank {rank} of {world_size} cannot find "
                            "rank 0")
    _int_env(environ, "MASTER_PORT", 1, 65535)
    return rank, world_size


@dataclass(frozen=True)
class Gang:
    """This process's place in an initialised gang, and the few collectives the training
    loop needs besides DDP's own."""

    rank: int
    world_size: int

    @property
    def primary(self) -> bool:
        return self.rank == 0

    def any(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag, true on every rank when it is true on any (one all-reduce)."""
        votes = torch.tensor([int(f) for f in flags], dtype=torch.int64)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in votes.tolist())

    def sum(self, *counts: int) -> tuple[int, ...]:
        """Each count summed over the ranks (exact: integers, the same on every rank)."""
        totals = torch.tensor(counts, dtype=torch.int64)
        dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        return tuple(int(v) for v in totals.tolist())

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (pickled over the gang's own connections)."""
        box = [value if self.primary else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sync_buffers(self, module: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm's running statistics) on every rank. DDP keeps the
        parameters equal; each rank's running statistics follow its own share of the data,
        and only evaluation and checkpoints read them."""
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's share of one global batch: every ``world_size``-th sample."""
        return indices[self.rank::self.world_size]

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DistributedDataParallel (its parameters and buffers are rank
        0's from now on). Buffers are not broadcast each step: :meth:`sync_buffers` does
        it when they are read."""
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, forward_sync_buffers=False)


class _RankOutput(io.TextIOBase):
    """Stdout of a rank other than 0: progress lines dropped, the rest prefixed."""

    def __init__(self, rank: int, out: TextIO) -> None:
        self.prefix = f"[rank {rank}] "
        self.out = out
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if not line.startswith(MACHINE_LINES):
                self.out.write(self.prefix + line + "\n")
        return len(text)

    def flush(self) -> None:
        self.out.flush()


def _is_gang_failure(error: BaseException) -> bool:
    # A peer that died shows as gloo's own error (DistError and its subclasses), or as a
    # plain RuntimeError naming the connection, depending on where the collective was.
    if isinstance(error, dist.DistError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(
        word in text for word in ("gloo", "connection closed", "connection reset",
                                  "timed out", "broken pipe"))


@contextmanager
def joined(environ: Mapping[str, str] = os.environ) -> Iterator[Gang | None]:
    """Join the gang the environment describes (``None``: no gang, nothing done), for the
    length of the block; rank 0's stdout is left alone, the others' is quietened."""
    place = rank_from_env(environ)
    if place is None:
        yield None
        return
    rank, world_size = place
    timeout = _timeout(environ)
    where = f"rank {rank} of {world_size} (rank 0 at {environ['MASTER_ADDR']}:" \
            f"{environ['MASTER_PORT']})"
    try:
        dist.init_process_group("gloo", init_method="env://", rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=timeout))
    except Exception as exc:
        raise GangError(f"{where}: could not join the gang within {timeout:g} s: "
                        f"{exc}") from exc
    peers_alive = True
    try:
        output = redirect_stdout(_RankOutput(rank, sys.stdout)) if rank else _unchanged()
        with output:
            yield Gang(rank, world_size)
    except Exception as exc:
        peers_alive = False
        if _is_gang_failure(exc):
            raise GangError(f"{where}: lost the gang (a peer died or stopped answering "
                            f"within {timeout:g} s): {exc}") from exc
        raise
    finally:
        if peers_alive:
            _leave_together()
        dist.destroy_process_group()


def _leave_together() -> None:
    # Ranks leave one at a time otherwise: rank 0 still saving a checkpoint while rank 1
    # tears its process group down, then rank 0's exit closes sockets under gloo's
    # threads in rank 1, which aborts the process ("terminate called without an active
    # exception") instead of leaving with its exit status. A barrier first means no rank
    # leaves while another still talks to it.
    with contextlib.suppress(Exception):  # a peer already gone: leave anyway
        dist.barrier()


@contextmanager
def _unchanged() -> Iterator[None]:
    yield

"""The policy interface: ``decide(snapshot) -> Decision``, pure and clock-free."""

from __future__ import annotations

import abc
from typing import ClassVar

from slicebox.snapshot import ClusterSnapshot, Decision


class Policy(abc.ABC):
    """Decides which jobs run and what shape they get.

    ``decide`` must be pure: no I/O, no clock of its own, no mutation of the snapshot.
    That is what lets the simulator call it a million times and a test call it with a
    hand-made snapshot.
    """

    name: ClassVar[str]
    #: True when the policy wants to be asked again at fixed intervals (time-sharing
    #: policies such as Gavel's max-min fairness); event-driven policies leave it False.
    periodic: ClassVar[bool] = False
    #: False when ``decide`` never reads running jobs' ``remaining_work`` or
    #: ``attained_gpu_seconds``: a simulator may then skip bringing them up to date
    #: before each decision (the one cost that grows with the number of running jobs).
    reads_progress: ClassVar[bool] = True
    #: True when ``decide`` reads that progress only while the waiting jobs do not all
    #: fit in the free GPUs (``slicebox.policies.common.free_fits``): when they do, a
    #: preemptive policy has nobody to preempt and needs no running job's progress.
    progress_when_contended: ClassVar[bool] = False
    #: True when ``decide`` may move running jobs to a faster GPU kind even when nobody
    #: waits: an event-driven caller then asks it after completions too (on pools with
    #: more than one kind), not only when jobs wait.
    migrates_between_kinds: ClassVar[bool] = False
    #: True when ``decide`` chooses elastic jobs' GPU counts (between ``demand.gpus`` and
    #: ``demand.max_gpus``) and may resize running ones: a simulator then runs
    #: Pollux/Sia jobs elastic by default. A resize is an assignment whose size differs
    #: from ``JobView.current``: a checkpoint and a restart on the new composition.
    resizes_jobs: ClassVar[bool] = False
    #: The round length a periodic policy is built for (None: the caller's default).
    default_round_seconds: ClassVar[float | None] = None

    @abc.abstractmethod
    def decide(self, snapshot: ClusterSnapshot) -> Decision:
        """Return the jobs to run, most important first."""

"""What an ended attempt leaves to resume from, read from the job's checkpoint folder.

The job writes ``latest.json`` (the checkpoint the next attempt restores) and
``restored.json`` (what this attempt restored, and how long that took) through
``slicebox.sdk``. Both are the job's files: they are read bounded, as JSON, never
followed through a link, and a missing or malformed one means "no checkpoint", never an
error. The checkpoint itself is never opened here.
"""

from __future__ import annotations

from pathlib import Path

from slicebox import sdk
from slicebox.store import CheckpointRecord, JobRecord


def how_it_ended(exit_code: int | None) -> str:
    """``checkpointed`` (saved on request), ``killed`` (any other exit: the grace period
    ran out, or it ignored the signal) or ``gone`` (no exit code: the process vanished)."""
    if exit_code == sdk.CHECKPOINTED:
        return "checkpointed"
    return "gone" if exit_code is None else "killed"


def attempt_record(job: JobRecord, folder: Path | None, outcome: str, reason: str,
                   requeued: bool = True) -> CheckpointRecord:
    """The record of ``job``'s current attempt as it ends: the checkpoint the next attempt
    will restore, and the work done past it (lost: redone next time; only for an attempt
    that is ``requeued``).

    Lost work is what the job *reported* past the checkpoint: steps it trained after its
    last report are not seen, so this is a lower bound where the job was killed; a job
    that saves on the stop signal loses nothing."""
    manifest = sdk.read_manifest(folder) if folder is not None else None
    restored = sdk.read_restored(folder) if folder is not None else None
    if restored is not None and restored["attempt"] != job.attempt:
        restored = None  # an earlier attempt's restore, not this one's
    # Samples this attempt reported (reported_at is reset when an attempt starts).
    reported = job.samples if job.reported_at is not None else None
    at = manifest["samples"] if manifest is not None else None
    lost = None
    if reported is not None and requeued:
        lost = max(reported - (at or 0), 0)
    return CheckpointRecord(
        job_id=job.id, attempt=job.attempt, recorded_at=0.0, outcome=outcome,
        reason=reason[:2000],
        path=manifest["path"] if manifest else None,
        step=manifest["step"] if manifest else None, samples=at,
        saved_at=manifest["saved_at"] if manifest else None,
        save_seconds=manifest["save_seconds"] if manifest else None,
        reported_samples=reported, lost_samples=lost,
        restored_samples=restored["samples"] if restored else None,
        restore_seconds=restored["restore_seconds"] if restored else None)


def resumed(job: JobRecord, folder: Path | None) -> bool:
    """This attempt started from a checkpoint (its restore is on record)."""
    restored = sdk.read_restored(folder) if folder is not None else None
    return restored is not None and restored["attempt"] == job.attempt


def tracking_metrics(record: CheckpointRecord) -> dict[str, float]:
    """The record as MLflow metrics (those that are known)."""
    values = {"lost_samples": record.lost_samples, "checkpoint_seconds": record.save_seconds,
              "restore_seconds": record.restore_seconds, "checkpoint_step": record.step}
    return {k: float(v) for k, v in values.items() if v is not None}

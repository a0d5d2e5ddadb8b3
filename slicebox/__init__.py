"""Slicebox: right-sized slices of a pool of accelerators for deep-learning jobs.

What a job calls (none of it imports torch until it saves or loads a checkpoint)::

    import slicebox
    slicebox.report(samples=1280, quality=0.9)
    state = slicebox.restore()            # None on a fresh start
    slicebox.checkpoint(state, step=100)  # atomic; the previous one stays until it is whole
    if slicebox.stop_requested():         # the checkpoint signal arrived
        slicebox.exit_checkpointed()      # exit code slicebox.CHECKPOINTED (85): requeue me
"""

from slicebox.sdk import (
    CHECKPOINTED,
    checkpoint,
    checkpoint_dir,
    elastic_batch,
    exit_checkpointed,
    report,
    restore,
    scaled_learning_rate,
    stop_requested,
    watch_stop,
)

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # slicebox.Client imports httpx: only when it is asked for, not at `import slicebox`.
    if name == "Client":
        from slicebox.client import Client

        return Client
    raise AttributeError(f"module 'slicebox' has no attribute {name!r}")


__all__ = ["CHECKPOINTED", "checkpoint", "checkpoint_dir", "elastic_batch", "exit_checkpointed",
           "report", "restore", "scaled_learning_rate", "stop_requested", "watch_stop"]

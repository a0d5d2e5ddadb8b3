"""Durable state: SQLite (WAL) in the state directory by default, PostgreSQL by URL.

Nothing of a job lives only in memory: a controller may die at any moment and the next
one continues from what is here.
"""

from slicebox.store.leases import LeaseHeld, LeaseLost
from slicebox.store.records import (
    CheckpointRecord,
    CheckpointSummary,
    CompositionRecord,
    DatasetRecord,
    EventRecord,
    JobRecord,
    Lease,
    ProgressSample,
    StopRequest,
    TokenRecord,
    UtilisationPoint,
)
from slicebox.store.services import ServiceNameTaken, ServiceRecord, UnknownService
from slicebox.store.store import Store
from slicebox.store.tokens import DEFAULT_TEAM, Scope, UnknownToken
from slicebox.store.transitions import (
    LEGAL,
    IllegalTransition,
    StoreCorrupt,
    StoreError,
    StoreUnavailable,
    UnknownJob,
)

__all__ = [
    "DEFAULT_TEAM", "LEGAL", "CheckpointRecord", "CheckpointSummary", "CompositionRecord",
    "DatasetRecord", "EventRecord", "IllegalTransition", "JobRecord", "Lease", "LeaseHeld",
    "LeaseLost", "ProgressSample", "Scope", "ServiceNameTaken", "ServiceRecord", "StopRequest",
    "Store", "StoreCorrupt",
    "StoreError", "StoreUnavailable", "TokenRecord", "UnknownJob", "UnknownService",
    "UnknownToken",
    "UtilisationPoint",
]

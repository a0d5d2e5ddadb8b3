"""Counters and dataset keys that PostgreSQL cannot hold in the baseline's types.

Sample counts and log offsets pass 2**31 on long runs (they are bounded at 2**63 - 1), and
a dataset's key is its path (up to 4095 bytes) when it has no name. PostgreSQL's INTEGER is
32-bit and it enforces VARCHAR lengths, so there they become BIGINT and TEXT. SQLite's
INTEGER is 64-bit already and it does not enforce lengths: nothing changes there (no table
is copied).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None

COUNTERS = (("jobs", "samples", True), ("jobs", "log_offset", False),
            ("progress", "samples", True), ("checkpoints", "step", True),
            ("checkpoints", "samples", True), ("checkpoints", "reported_samples", True),
            ("checkpoints", "lost_samples", True), ("checkpoints", "restored_samples", True))


def _on_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"  # also in offline (--sql) mode


def upgrade() -> None:
    if not _on_postgresql():
        return
    for table, column, nullable in COUNTERS:
        op.alter_column(table, column, type_=sa.BigInteger(), existing_type=sa.Integer(),
                        existing_nullable=nullable)
    op.alter_column("datasets", "key", type_=sa.Text(), existing_type=sa.String(length=512),
                    existing_nullable=False)


def downgrade() -> None:
    # Fails (and changes nothing: PostgreSQL's DDL is transactional) if a value no longer
    # fits the narrower type.
    if not _on_postgresql():
        return
    for table, column, nullable in COUNTERS:
        op.alter_column(table, column, type_=sa.Integer(), existing_type=sa.BigInteger(),
                        existing_nullable=nullable)
    op.alter_column("datasets", "key", type_=sa.String(length=512), existing_type=sa.Text(),
                    existing_nullable=False)

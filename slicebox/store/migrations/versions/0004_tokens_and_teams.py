"""Tokens and teams: the service's API tokens (only their hashes) and each job's team.

Every job already in the store belongs to the default team (the column's server default
fills it in, so no table is copied on SQLite).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("team", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("revoked_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_tokens_team"), "tokens", ["team"], unique=False)
    # Plain ALTER TABLE ... ADD COLUMN on both databases: a NOT NULL column with a default
    # is one SQLite can add in place.
    op.add_column("jobs", sa.Column("team", sa.String(length=64), nullable=False,
                                    server_default="default"))
    op.create_index(op.f("ix_jobs_team"), "jobs", ["team"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_jobs_team"), table_name="jobs")
    with op.batch_alter_table("jobs") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("team")
    op.drop_index(op.f("ix_tokens_team"), table_name="tokens")
    op.drop_table("tokens")

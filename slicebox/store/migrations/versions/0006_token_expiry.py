"""Token expiry: when a token stops being accepted (``token create --expires-in 30d``).

Tokens made before have none (they are accepted until revoked), so the column is nullable
and no row is rewritten.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tokens", sa.Column("expires_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("expires_at")

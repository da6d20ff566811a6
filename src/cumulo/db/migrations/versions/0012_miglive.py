"""migrations: a live migration's progress (Nova's memory_*/disk_* columns) and the downtime QEMU measured

Revision ID: 0012_miglive
Revises: 0011_cluster_secrets
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_miglive"
down_revision = "0011_cluster_secrets"
branch_labels = None
depends_on = None

COLUMNS = ("memory_total", "memory_processed", "memory_remaining", "disk_total", "disk_processed", "disk_remaining")


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=True))
        batch.add_column(sa.Column("downtime_ms", sa.Integer, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        for name in (*COLUMNS, "downtime_ms"):
            batch.drop_column(name)

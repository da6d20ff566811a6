"""networks: one VXLAN network per VNI (a partial unique index on the segmentation id of vxlan networks)

Revision ID: 0012_nethost
Revises: 0011_cluster_secrets
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_nethost"
down_revision = "0011_cluster_secrets"
branch_labels = None
depends_on = None

WHERE = sa.text("provider_network_type = 'vxlan'")


def upgrade() -> None:
    op.create_index("uq_networks_vxlan_vni", "networks", ["provider_segmentation_id"], unique=True,
                    sqlite_where=WHERE, postgresql_where=WHERE)


def downgrade() -> None:
    op.drop_index("uq_networks_vxlan_vni", table_name="networks")

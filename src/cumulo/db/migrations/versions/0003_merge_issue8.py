"""merge the issue-8 branches

Revision ID: 0003
Revises: the ten 0002_* revisions, written side by side from 0001
Create Date: 2026-12-06

The issue-8 migrations were written in parallel, each from 0001; this empty revision joins them so
the history has one head again.
"""

from __future__ import annotations

revision = "0003"
down_revision = ("0002_aggregates","0002_identity_extras","0002_identity_security","0002_image_tasks","0002_metadefs","0002_migrations","0002_resource_pools","0002_revocation_events","0002_server_groups","0002_user_quotas")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

"""merge the issue-14 branches

Revision ID: 0013_merge_issue14
Revises: 0012_miglive, 0012_nethost (written side by side from 0011_cluster_secrets)
Create Date: 2026-12-06

The issue-14 migrations were written in parallel, each from 0011_cluster_secrets; this empty
revision joins them so the history has one head again. A later migration revises this one.
"""

from __future__ import annotations

revision = "0013_merge_issue14"
down_revision = ("0012_miglive", "0012_nethost")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

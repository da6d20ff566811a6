"""identity: extra attributes on users and projects, application credentials, EC2 credentials

Revision ID: 0002_identity_extras
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_identity_extras"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("identity_projects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("extra", sa.JSON(), nullable=True))
    with op.batch_alter_table("identity_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("extra", sa.JSON(), nullable=True))

    op.create_table(
        "identity_application_credentials",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("unrestricted", sa.Boolean(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["identity_projects.id"],
            name=op.f("fk_identity_application_credentials_project_id_identity_projects"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["identity_users.id"],
            name=op.f("fk_identity_application_credentials_user_id_identity_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_application_credentials")),
        sa.UniqueConstraint("user_id", "name", name="uq_identity_application_credentials_user_name"),
    )
    with op.batch_alter_table("identity_application_credentials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_application_credentials_project_id"), ["project_id"], unique=False
        )

    op.create_table(
        "identity_ec2_credentials",
        sa.Column("access", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["identity_projects.id"],
            name=op.f("fk_identity_ec2_credentials_project_id_identity_projects"), ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["identity_users.id"],
            name=op.f("fk_identity_ec2_credentials_user_id_identity_users"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("access", name=op.f("pk_identity_ec2_credentials")),
    )
    with op.batch_alter_table("identity_ec2_credentials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identity_ec2_credentials_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("identity_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("app_cred_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_identity_tokens_app_cred_id"), ["app_cred_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_identity_tokens_app_cred_id_identity_application_credentials"),
            "identity_application_credentials", ["app_cred_id"], ["id"], ondelete="CASCADE",
        )


def downgrade() -> None:
    with op.batch_alter_table("identity_tokens", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_identity_tokens_app_cred_id_identity_application_credentials"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_identity_tokens_app_cred_id"))
        batch_op.drop_column("app_cred_id")
    with op.batch_alter_table("identity_ec2_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_ec2_credentials_user_id"))
    op.drop_table("identity_ec2_credentials")
    with op.batch_alter_table("identity_application_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_application_credentials_project_id"))
    op.drop_table("identity_application_credentials")
    with op.batch_alter_table("identity_users", schema=None) as batch_op:
        batch_op.drop_column("extra")
    with op.batch_alter_table("identity_projects", schema=None) as batch_op:
        batch_op.drop_column("extra")

"""paas: catalogue, inventory, tasks, steps, ledger, templates, autoscaling

Revision ID: 0010_paas
Revises: 0009_occi_mixins
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_paas"
down_revision = "0009_occi_mixins"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paas_env_instances",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("domain_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("environment_name", sa.String(length=255), nullable=False),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("keep_on_failure", sa.Boolean(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("app_generation", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_env_instances")),
        sa.UniqueConstraint("project_id", "name", name="uq_paas_env_instances_name"),
    )
    with op.batch_alter_table("paas_env_instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paas_env_instances_project_id"), ["project_id"], unique=False)

    op.create_table(
        "paas_environments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("domain_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_environments")),
        sa.UniqueConstraint("project_id", "name", name="uq_paas_environments_name"),
    )
    with op.batch_alter_table("paas_environments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paas_environments_project_id"), ["project_id"], unique=False)

    op.create_table(
        "paas_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("env_instance_id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("tier", sa.String(length=255), nullable=False),
        sa.Column("time", sa.DateTime(), nullable=False),
        sa.Column("policy", sa.String(length=255), nullable=True),
        sa.Column("metric", sa.String(length=32), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("comparison", sa.String(length=8), nullable=True),
        sa.Column("decision", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("from_size", sa.Integer(), nullable=True),
        sa.Column("to_size", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_events")),
    )
    with op.batch_alter_table("paas_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paas_events_env_instance_id"), ["env_instance_id"], unique=False)

    op.create_table(
        "paas_products",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("builtin", sa.Boolean(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("recipes", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_products")),
        sa.UniqueConstraint("project_id", "name", "version", name="uq_paas_products_release"),
    )
    with op.batch_alter_table("paas_products", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paas_products_project_id"), ["project_id"], unique=False)

    op.create_table(
        "paas_resources",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("env_instance_id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("step_key", sa.String(length=255), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_resources")),
    )
    with op.batch_alter_table("paas_resources", schema=None) as batch_op:
        batch_op.create_index("ix_paas_resources_instance_state", ["env_instance_id", "state"], unique=False)

    op.create_table(
        "paas_tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("domain_id", sa.String(length=255), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=255), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("env_instance_id", sa.String(length=36), nullable=True),
        sa.Column("env_instance_name", sa.String(length=255), nullable=True),
        sa.Column("tier", sa.String(length=255), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("result_href", sa.Text(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("callback", sa.Text(), nullable=True),
        sa.Column("callback_state", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("lease_until", sa.DateTime(), nullable=True),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("end_time", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_tasks")),
    )
    with op.batch_alter_table("paas_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paas_tasks_env_instance_id"), ["env_instance_id"], unique=False)
        batch_op.create_index("ix_paas_tasks_project_status", ["project_id", "status"], unique=False)

    op.create_table(
        "paas_applications",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("env_instance_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("product", sa.String(length=255), nullable=False),
        sa.Column("artifact", sa.JSON(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["env_instance_id"],
            ["paas_env_instances.id"],
            name=op.f("fk_paas_applications_env_instance_id_paas_env_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_applications")),
        sa.UniqueConstraint("env_instance_id", "name", name="uq_paas_applications_name"),
    )
    with op.batch_alter_table("paas_applications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_paas_applications_env_instance_id"), ["env_instance_id"], unique=False
        )

    op.create_table(
        "paas_scaling_state",
        sa.Column("env_instance_id", sa.String(length=36), nullable=False),
        sa.Column("tier", sa.String(length=255), nullable=False),
        sa.Column("policy", sa.String(length=255), nullable=False),
        sa.Column("breaches", sa.Integer(), nullable=False),
        sa.Column("cooldown_end", sa.DateTime(), nullable=True),
        sa.Column("last_decision", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["env_instance_id"],
            ["paas_env_instances.id"],
            name=op.f("fk_paas_scaling_state_env_instance_id_paas_env_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("env_instance_id", "tier", "policy", name=op.f("pk_paas_scaling_state")),
    )
    op.create_table(
        "paas_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("depends_on", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("output", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"], ["paas_tasks.id"], name=op.f("fk_paas_steps_task_id_paas_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_steps")),
        sa.UniqueConstraint("task_id", "key", name="uq_paas_steps_key"),
    )
    with op.batch_alter_table("paas_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paas_steps_task_id"), ["task_id"], unique=False)

    op.create_table(
        "paas_templates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("env_instance_id", sa.String(length=36), nullable=False),
        sa.Column("tier", sa.String(length=255), nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=True),
        sa.Column("source_node", sa.String(length=255), nullable=True),
        sa.Column("app_generation", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["env_instance_id"],
            ["paas_env_instances.id"],
            name=op.f("fk_paas_templates_env_instance_id_paas_env_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_templates")),
        sa.UniqueConstraint("env_instance_id", "tier", name="uq_paas_templates_tier"),
    )
    with op.batch_alter_table("paas_templates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_paas_templates_env_instance_id"), ["env_instance_id"], unique=False
        )

    op.create_table(
        "paas_tier_instances",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("env_instance_id", sa.String(length=36), nullable=False),
        sa.Column("tier", sa.String(length=255), nullable=False),
        sa.Column("replica", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("server_id", sa.String(length=36), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("floating_ip", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("from_template", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["env_instance_id"],
            ["paas_env_instances.id"],
            name=op.f("fk_paas_tier_instances_env_instance_id_paas_env_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_tier_instances")),
        sa.UniqueConstraint("env_instance_id", "tier", "replica", name="uq_paas_tier_instances_replica"),
    )
    with op.batch_alter_table("paas_tier_instances", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_paas_tier_instances_env_instance_id"), ["env_instance_id"], unique=False
        )

    op.create_table(
        "paas_tiers",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("environment_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["paas_environments.id"],
            name=op.f("fk_paas_tiers_environment_id_paas_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_tiers")),
        sa.UniqueConstraint("environment_id", "name", name="uq_paas_tiers_name"),
    )
    with op.batch_alter_table("paas_tiers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_paas_tiers_environment_id"), ["environment_id"], unique=False)

    op.create_table(
        "paas_product_instances",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tier_instance_id", sa.String(length=36), nullable=False),
        sa.Column("env_instance_id", sa.String(length=36), nullable=False),
        sa.Column("product", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tier_instance_id"],
            ["paas_tier_instances.id"],
            name=op.f("fk_paas_product_instances_tier_instance_id_paas_tier_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_product_instances")),
        sa.UniqueConstraint("tier_instance_id", "product", name="uq_paas_product_instances_product"),
    )
    with op.batch_alter_table("paas_product_instances", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_paas_product_instances_env_instance_id"), ["env_instance_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_paas_product_instances_tier_instance_id"), ["tier_instance_id"], unique=False
        )

    op.create_table(
        "paas_exec_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("product_instance_id", sa.String(length=36), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("signal", sa.Integer(), nullable=True),
        sa.Column("timed_out", sa.Boolean(), nullable=False),
        sa.Column("stdout", sa.Text(), nullable=False),
        sa.Column("stderr", sa.Text(), nullable=False),
        sa.Column("skipped_reason", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["product_instance_id"],
            ["paas_product_instances.id"],
            name=op.f("fk_paas_exec_records_product_instance_id_paas_product_instances"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_paas_exec_records")),
    )
    with op.batch_alter_table("paas_exec_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_paas_exec_records_product_instance_id"), ["product_instance_id"], unique=False
        )



def downgrade() -> None:
    with op.batch_alter_table("paas_exec_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paas_exec_records_product_instance_id"))

    op.drop_table("paas_exec_records")
    with op.batch_alter_table("paas_product_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paas_product_instances_tier_instance_id"))
        batch_op.drop_index(batch_op.f("ix_paas_product_instances_env_instance_id"))

    op.drop_table("paas_product_instances")
    with op.batch_alter_table("paas_tiers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paas_tiers_environment_id"))

    op.drop_table("paas_tiers")
    with op.batch_alter_table("paas_tier_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paas_tier_instances_env_instance_id"))

    op.drop_table("paas_tier_instances")
    with op.batch_alter_table("paas_templates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paas_templates_env_instance_id"))

    op.drop_table("paas_templates")
    with op.batch_alter_table("paas_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paas_steps_task_id"))

    op.drop_table("paas_steps")
    op.drop_table("paas_scaling_state")
    with op.batch_alter_table("paas_applications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paas_applications_env_instance_id"))

    op.drop_table("paas_applications")
    with op.batch_alter_table("paas_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_paas_tasks_project_status")
        batch_op.drop_index(batch_op.f("ix_paas_tasks_env_instance_id"))

    op.drop_table("paas_tasks")
    with op.batch_alter_table("paas_resources", schema=None) as batch_op:
        batch_op.drop_index("ix_paas_resources_instance_state")

    op.drop_table("paas_resources")
    with op.batch_alter_table("paas_products", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paas_products_project_id"))

    op.drop_table("paas_products")
    with op.batch_alter_table("paas_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paas_events_env_instance_id"))

    op.drop_table("paas_events")
    with op.batch_alter_table("paas_environments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paas_environments_project_id"))

    op.drop_table("paas_environments")
    with op.batch_alter_table("paas_env_instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_paas_env_instances_project_id"))

    op.drop_table("paas_env_instances")

"""PaaS manager tables: the catalogue (what can be deployed) apart from the inventory (what is
deployed), the tasks with their persisted step graphs, the ledger of what a task made, and the
autoscaler's state and events.

Catalogue
- `paas_products`: product releases. `project_id` "" is a built-in or public product visible to
  every project (built-ins are read-only); otherwise the owning project. `metadata` is SDC's list of
  {key, value, description}; `attributes` Pegasus's list of {key, value, description, type};
  `recipes` maps a step (install, configure, start, stop, uninstall, deploy) to shell text.
- `paas_environments` + `paas_tiers`: a project's environments; a tier's whole TierDto, normalised
  (flavour, image, keypair, floatingip, networks, security_group, min/max/initial, products with
  their attributes, metadata, scaling policies), is its `spec`.

Inventory
- `paas_env_instances`: a deployed environment (Pegasus's blueprintName is `name`, unique in the
  project). `environment` is a JSON snapshot of the environment and the product releases it used,
  taken at deploy time, so catalogue edits never change a running instance.
- `paas_tier_instances`: ONE NODE of a tier (Pegasus's tierInstance), replica numbers never reused.
- `paas_product_instances`: a product on a node; `paas_exec_records` one row per recipe run (or
  skip) with exit code, signal, bounded output.
- `paas_applications`: artifacts deployed into a product's directory.

Engine
- `paas_tasks`: integer ids (Pegasus's Long), the caller's identity to rebuild a RequestContext,
  a lease (owner, lease_until) so exactly one engine runs a task, the result href and the error.
- `paas_steps`: the task's plan, one row per step, with deterministic keys and `depends_on`.
- `paas_resources`: the ledger: an intent row (state "creating") written BEFORE a create, the id
  after it ("created"), "deleted" once undone. Rollback replays it in reverse; resume adopts from it.
- `paas_templates`: a tier's template image (taken from its first configured node).
- `paas_scaling_state`: per (instance, tier, policy): consecutive breaching periods, cooldown end,
  last decision. `paas_events`: every autoscaling decision with the metric value behind it.
"""

from __future__ import annotations

import sqlalchemy as sa

from cumulo.db import metadata, utcnow

_ID = sa.String(36)
_NAME = sa.String(255)

paas_products = sa.Table(
    "paas_products",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("project_id", _NAME, nullable=False, default="", index=True),  # "": built-in or public
    sa.Column("name", _NAME, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("builtin", sa.Boolean, nullable=False, default=False),
    sa.Column("metadata", sa.JSON, nullable=False, default=list),
    sa.Column("attributes", sa.JSON, nullable=False, default=list),
    sa.Column("recipes", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.UniqueConstraint("project_id", "name", "version", name="uq_paas_products_release"),
)

paas_environments = sa.Table(
    "paas_environments",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("project_id", _NAME, nullable=False, index=True),
    sa.Column("domain_id", _NAME, nullable=False, default="default"),
    sa.Column("name", _NAME, nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint("project_id", "name", name="uq_paas_environments_name"),
)

paas_tiers = sa.Table(
    "paas_tiers",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column(
        "environment_id", _ID, sa.ForeignKey("paas_environments.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("name", _NAME, nullable=False),
    sa.Column("position", sa.Integer, nullable=False, default=0),
    sa.Column("spec", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint("environment_id", "name", name="uq_paas_tiers_name"),
)

paas_env_instances = sa.Table(
    "paas_env_instances",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("project_id", _NAME, nullable=False, index=True),
    sa.Column("user_id", _NAME, nullable=False),
    sa.Column("domain_id", _NAME, nullable=False, default="default"),
    sa.Column("name", _NAME, nullable=False),  # Pegasus's blueprintName
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("environment_name", _NAME, nullable=False),
    sa.Column("environment", sa.JSON, nullable=False, default=dict),  # snapshot at deploy time
    sa.Column("status", sa.String(32), nullable=False),  # Pegasus InstallableInstance.Status
    sa.Column("error", sa.JSON, nullable=True),
    sa.Column("keep_on_failure", sa.Boolean, nullable=False, default=False),
    sa.Column("task_id", sa.Integer, nullable=True),  # the last task that changed it
    sa.Column("app_generation", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint("project_id", "name", name="uq_paas_env_instances_name"),
)

paas_tier_instances = sa.Table(
    "paas_tier_instances",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column(
        "env_instance_id", _ID, sa.ForeignKey("paas_env_instances.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("tier", _NAME, nullable=False),
    sa.Column("replica", sa.Integer, nullable=False),
    sa.Column("name", _NAME, nullable=False),  # <blueprintName>-<tier>-<replica>
    sa.Column("server_id", sa.String(36), nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("floating_ip", sa.String(64), nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("from_template", sa.String(36), nullable=True),  # the template image id it booted from
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint("env_instance_id", "tier", "replica", name="uq_paas_tier_instances_replica"),
)

paas_product_instances = sa.Table(
    "paas_product_instances",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column(
        "tier_instance_id", _ID, sa.ForeignKey("paas_tier_instances.id", ondelete="CASCADE"), nullable=False,
        index=True,
    ),
    sa.Column("env_instance_id", _ID, nullable=False, index=True),
    sa.Column("product", _NAME, nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("attributes", sa.JSON, nullable=False, default=dict),  # resolved key -> value of the last run
    sa.Column("outputs", sa.JSON, nullable=False, default=dict),  # what the recipes wrote ($PAAS_OUTPUT)
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint("tier_instance_id", "product", name="uq_paas_product_instances_product"),
)

paas_exec_records = sa.Table(
    "paas_exec_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "product_instance_id", _ID, sa.ForeignKey("paas_product_instances.id", ondelete="CASCADE"), nullable=False,
        index=True,
    ),
    sa.Column("task_id", sa.Integer, nullable=True),
    sa.Column("step", sa.String(32), nullable=False),  # install, configure, start, stop, uninstall, deploy
    sa.Column("attempt", sa.Integer, nullable=False, default=1),
    sa.Column("exit_code", sa.Integer, nullable=True),
    sa.Column("signal", sa.Integer, nullable=True),
    sa.Column("timed_out", sa.Boolean, nullable=False, default=False),
    sa.Column("stdout", sa.Text, nullable=False, default=""),
    sa.Column("stderr", sa.Text, nullable=False, default=""),
    sa.Column("skipped_reason", sa.Text, nullable=True),  # e.g. "template image <id>"
    sa.Column("started_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("ended_at", sa.DateTime, nullable=True),
)

paas_applications = sa.Table(
    "paas_applications",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column(
        "env_instance_id", _ID, sa.ForeignKey("paas_env_instances.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("name", _NAME, nullable=False),
    sa.Column("version", sa.String(64), nullable=False, default=""),
    sa.Column("product", _NAME, nullable=False),  # the product whose artifact dir receives it
    sa.Column("artifact", sa.JSON, nullable=False, default=dict),  # {sha256, size, source}
    sa.Column("generation", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint("env_instance_id", "name", name="uq_paas_applications_name"),
)

paas_tasks = sa.Table(
    "paas_tasks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_id", _NAME, nullable=False),
    sa.Column("user_id", _NAME, nullable=False),
    sa.Column("domain_id", _NAME, nullable=False, default="default"),
    sa.Column("roles", sa.JSON, nullable=False, default=list),
    sa.Column("request_id", _NAME, nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),  # deploy, destroy, scale, autoscale, application, ...
    sa.Column("status", sa.String(16), nullable=False),  # QUEUED, RUNNING, SUCCESS, ERROR
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("env_instance_id", _ID, nullable=True, index=True),
    sa.Column("env_instance_name", _NAME, nullable=True),
    sa.Column("tier", _NAME, nullable=True),
    sa.Column("params", sa.JSON, nullable=False, default=dict),
    sa.Column("result_href", sa.Text, nullable=True),
    sa.Column("error", sa.JSON, nullable=True),  # {message, majorErrorCode, minorErrorCode, step, output}
    sa.Column("callback", sa.Text, nullable=True),
    sa.Column("callback_state", sa.Text, nullable=True),
    sa.Column("owner", _NAME, nullable=True),  # the engine holding the lease
    sa.Column("lease_until", sa.DateTime, nullable=True),
    sa.Column("start_time", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("end_time", sa.DateTime, nullable=True),
    sa.Index("ix_paas_tasks_project_status", "project_id", "status"),
)

paas_steps = sa.Table(
    "paas_steps",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.Integer, sa.ForeignKey("paas_tasks.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("key", _NAME, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("depends_on", sa.JSON, nullable=False, default=list),
    sa.Column("state", sa.String(16), nullable=False),  # PENDING, RUNNING, DONE, FAILED, SKIPPED
    sa.Column("attempt", sa.Integer, nullable=False, default=0),
    sa.Column("params", sa.JSON, nullable=False, default=dict),
    sa.Column("output", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("started_at", sa.DateTime, nullable=True),
    sa.Column("ended_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint("task_id", "key", name="uq_paas_steps_key"),
)

paas_resources = sa.Table(
    "paas_resources",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("env_instance_id", _ID, nullable=False),
    sa.Column("task_id", sa.Integer, nullable=True),
    sa.Column("step_key", _NAME, nullable=True),
    sa.Column("type", sa.String(32), nullable=False),  # server, security_group, floating_ip, image, port, ...
    sa.Column("name", _NAME, nullable=False),  # deterministic: adopt finds a crashed create by it
    sa.Column("resource_id", sa.String(64), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),  # creating, created, deleted
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Index("ix_paas_resources_instance_state", "env_instance_id", "state"),
)

paas_templates = sa.Table(
    "paas_templates",
    metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column(
        "env_instance_id", _ID, sa.ForeignKey("paas_env_instances.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("tier", _NAME, nullable=False),
    sa.Column("image_id", sa.String(36), nullable=True),
    sa.Column("source_node", _NAME, nullable=True),
    sa.Column("app_generation", sa.Integer, nullable=False, default=0),
    sa.Column("status", sa.String(16), nullable=False),  # creating, active, error, deleted
    sa.Column("created_at", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("updated_at", sa.DateTime, nullable=True),
    sa.UniqueConstraint("env_instance_id", "tier", name="uq_paas_templates_tier"),
)

paas_scaling_state = sa.Table(
    "paas_scaling_state",
    metadata,
    sa.Column(
        "env_instance_id", _ID, sa.ForeignKey("paas_env_instances.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("tier", _NAME, primary_key=True),
    sa.Column("policy", _NAME, primary_key=True),
    sa.Column("breaches", sa.Integer, nullable=False, default=0),
    sa.Column("cooldown_end", sa.DateTime, nullable=True),
    sa.Column("last_decision", sa.JSON, nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=True),
)

paas_events = sa.Table(
    "paas_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("env_instance_id", _ID, nullable=False, index=True),
    sa.Column("project_id", _NAME, nullable=False),
    sa.Column("tier", _NAME, nullable=False),
    sa.Column("time", sa.DateTime, nullable=False, default=utcnow),
    sa.Column("policy", _NAME, nullable=True),  # None: a manual scale
    sa.Column("metric", sa.String(32), nullable=True),  # cpu, memory
    sa.Column("value", sa.Float, nullable=True),
    sa.Column("threshold", sa.Float, nullable=True),
    sa.Column("comparison", sa.String(8), nullable=True),
    sa.Column("decision", sa.String(32), nullable=False),  # scale_out, scale_in, no_action
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("from_size", sa.Integer, nullable=True),
    sa.Column("to_size", sa.Integer, nullable=True),
    sa.Column("task_id", sa.Integer, nullable=True),
)

"""The engine's seam: states, the step contract, and what the API (and the autoscaler) ask of it.

A task is a persisted graph of steps (`paas_steps`). `plan.py` functions are pure: they turn an
instance's environment snapshot (and a scale request) into `StepSpec`s with deterministic keys and
`depends_on`. The runner inserts them with the task in one write, then runs every ready step (all
its dependencies DONE) concurrently, each `PENDING -> RUNNING (attempt + 1) -> DONE | FAILED` by
compare-and-swap. A step's coroutine is looked up by its `kind` in `ACTIONS` (filled by the modules
that define actions, with `@action("kind")`), gets a `StepRun`, and returns its output (JSON), which
later steps read with `run.output_of(key)`.

An action must be idempotent under resume: the runner may run it again (a new attempt) after a
crash while it was RUNNING. Every create goes through `run.ledger`: `intend()` BEFORE the create
(type + deterministic name), `created()` after it; on a new attempt, `run.ledger.adopt()` finds what
a crashed attempt made (by that name) so nothing is doubled. Rollback replays the ledger.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from cumulo.context import RequestContext

if TYPE_CHECKING:
    from cumulo.paas.deps import PaasServices


class TaskStatus(enum.StrEnum):
    """Pegasus's TaskStates that Cumulo uses (QUEUED only until an engine takes the task)."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"


class TaskKind(enum.StrEnum):
    DEPLOY = "deploy"  # create an environment instance
    DESTROY = "destroy"  # delete it
    SCALE = "scale"  # manual scale of one tier (count or a named node)
    AUTOSCALE = "autoscale"  # the autoscaler's scale of one tier
    APPLICATION = "application"  # deploy an application artifact
    UNDEPLOY_APPLICATION = "undeploy_application"
    RECONFIGURE = "reconfigure"  # Pegasus's "scale reconfigure": new attribute values for a tier's products
    INSTALL_PRODUCT = "install_product"  # one more product release on one node
    UNINSTALL_PRODUCT = "uninstall_product"  # that product taken away again


class StepState(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class Status(enum.StrEnum):
    """Pegasus's InstallableInstance.Status (environment, tier, product and application instances)."""

    INIT = "INIT"
    DEPLOYING = "DEPLOYING"
    DEPLOYED = "DEPLOYED"
    INSTALLING = "INSTALLING"
    INSTALLED = "INSTALLED"
    CONFIGURING = "CONFIGURING"
    ERROR = "ERROR"
    UNINSTALLING = "UNINSTALLING"
    UNINSTALLED = "UNINSTALLED"
    UNDEPLOYING = "UNDEPLOYING"
    UNDEPLOYED = "UNDEPLOYED"
    DEPLOYING_ARTEFACT = "DEPLOYING_ARTEFACT"
    ARTEFACT_DEPLOYED = "ARTEFACT_DEPLOYED"
    UNDEPLOYING_ARTEFACT = "UNDEPLOYING_ARTEFACT"
    ARTEFACT_UNDEPLOYED = "ARTEFACT_UNDEPLOYED"


@dataclass(frozen=True)
class StepSpec:
    """One planned step: `key` is unique in its task and deterministic (e.g. "server:web:2",
    "install:web:2:httpd-web"), `kind` names the action ("server", "install", ...)."""

    key: str
    kind: str
    depends_on: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Plan:
    """What a plan function returns: the steps, and the inventory rows to insert with the task in
    the same transaction (table name -> rows, e.g. {"paas_tier_instances": [...],
    "paas_product_instances": [...]}; ids and names decided by the planner, deterministic where
    resume needs them). `instance_status`, when set, is written on the instance row too."""

    steps: list[StepSpec] = field(default_factory=list)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    instance_status: str | None = None


class Ledger(Protocol):
    """The task's record of what it made (`paas_resources`), for rollback and adoption."""

    async def intend(self, type_: str, name: str) -> None:
        """Record that a create of (type, deterministic name) is about to happen (state creating)."""
        ...

    async def created(self, type_: str, name: str, resource_id: str) -> None:
        """Record the id the create returned (state created)."""
        ...

    async def adopt(self, type_: str, name: str) -> str | None:
        """The id of a (type, name) an earlier attempt of this instance created or intended and
        that still exists (looked up in the services by name), else None."""
        ...


class StepRun(Protocol):
    """What an action sees while it runs one step."""

    ctx: RequestContext  # rebuilt from the task row (the caller's user, project and roles)
    services: PaasServices
    task: Mapping[str, Any]  # the paas_tasks row
    step: Mapping[str, Any]  # the paas_steps row (key, kind, params, attempt)
    instance_id: str
    ledger: Ledger

    def output_of(self, key: str) -> Mapping[str, Any]:
        """The output of an earlier DONE step of this task (KeyError if none)."""
        ...

    async def instance(self) -> dict[str, Any]:
        """The paas_env_instances row, fresh from the DB."""
        ...


Action = Callable[[StepRun], Awaitable[Mapping[str, Any] | None]]
ACTIONS: dict[str, Action] = {}


def action(kind: str) -> Callable[[Action], Action]:
    """Register the coroutine that runs steps of `kind` (one per kind; a duplicate is a bug)."""

    def register(fn: Action) -> Action:
        if kind in ACTIONS and ACTIONS[kind] is not fn:
            raise RuntimeError(f"two actions for step kind {kind!r}")
        ACTIONS[kind] = fn
        return fn

    return register


class StepFailed(Exception):
    """An action's failure that the task error should show as is: the step, the exit code of a
    recipe (minorErrorCode) and the tail of its output."""

    def __init__(self, message: str, *, exit_code: int | None = None, output: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.output = output


class PaasEngineAPI(Protocol):
    """What the API and the autoscaler ask of the engine. Each call validates what depends on the
    inventory (Conflict when the instance already has a running task, Invalid for a scale beyond
    min/max or an unknown node), then writes the task, the rows and the plan in ONE transaction,
    starts it and returns the paas_tasks row at once (the API answers 202 with the Task)."""

    async def deploy(
        self, ctx: RequestContext, *, name: str, description: str, environment: Mapping[str, Any],
        keep_on_failure: bool = False, callback: str | None = None,
    ) -> dict[str, Any]:
        """Create environment instance `name` from `environment`, the snapshot the catalogue built
        (an EnvironmentDto, normalised, with every tier's product releases copied in full)."""
        ...

    async def destroy(self, ctx: RequestContext, instance: Mapping[str, Any], *, callback: str | None = None
                      ) -> dict[str, Any]: ...

    async def scale(
        self, ctx: RequestContext, instance: Mapping[str, Any], tier: str, *, count: int | None = None,
        remove: str | None = None, use_template: bool = True, callback: str | None = None,
        kind: TaskKind = TaskKind.SCALE, reason: str = "",
    ) -> dict[str, Any]:
        """Scale `tier` to `count` nodes, or remove node `remove` (a tierInstanceName)."""
        ...

    async def deploy_application(
        self, ctx: RequestContext, instance: Mapping[str, Any], application: Mapping[str, Any], *,
        callback: str | None = None,
    ) -> dict[str, Any]:
        """`application`: {name, version, product, artifact: bytes-free description {sha256, size,
        source}} (the API stored the artifact where the engine reads it)."""
        ...

    async def undeploy_application(
        self, ctx: RequestContext, instance: Mapping[str, Any], name: str, *, callback: str | None = None,
    ) -> dict[str, Any]: ...

    async def reconfigure_tier(
        self, ctx: RequestContext, instance: Mapping[str, Any], tier: str,
        values: Mapping[str, Sequence[Mapping[str, Any]]], *, callback: str | None = None,
    ) -> dict[str, Any]:
        """Set attribute values (product name -> [{key, value, ...}]) of `tier`'s products and
        re-run their configure on every running node of the tier (engine/plan_products.py)."""
        ...

    async def install_product(
        self, ctx: RequestContext, instance: Mapping[str, Any], node: str, entry: Mapping[str, Any], *,
        callback: str | None = None,
    ) -> dict[str, Any]:
        """Install one more product release (`entry`: {name, version, attributes, release}, as the
        catalogue resolves it) on node `node` (a tierInstanceName)."""
        ...

    async def uninstall_product(
        self, ctx: RequestContext, instance: Mapping[str, Any], node: str, product: str, *,
        callback: str | None = None,
    ) -> dict[str, Any]: ...

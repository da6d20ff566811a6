"""A tier's `affinity` (Pegasus's TierDto field, default "None") as a Nova server group.

`policy(tier)`: None for no affinity ("None", "none", "" or absent), else one of Nova's policies
(affinity, anti-affinity, soft-affinity, soft-anti-affinity) (catalogue.affinity_policy, which
refuses anything else at registration). A tier with a policy gets one server group
`paas-<inst8>-<tier>` (ledger type "server_group"), made by the "group:<tier>" step (kind
"server_group") before the tier's servers; each of the tier's servers is created with the
scheduler hint {"group": <id>} (`ensure`, also used by a scale's server step, which adopts the group
by its name). Rollback and destroy delete it after the servers (reverter.ORDER).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cumulo import errors
from cumulo.compute.service.server_groups import ServerGroupService
from cumulo.paas.catalogue import affinity_policy
from cumulo.paas.engine import plan
from cumulo.paas.engine.base import StepFailed, StepRun, action

TYPE = "server_group"


def policy(tier: Mapping[str, Any]) -> str | None:
    try:
        return affinity_policy(tier)
    except errors.Invalid as exc:
        raise StepFailed(exc.message) from None


def group_name(instance_id: str, tier: str) -> str:
    return plan.secgroup_name(instance_id, tier)


async def ensure(run: StepRun, tier_name: str, tier: Mapping[str, Any]) -> str | None:
    """The id of the tier's server group (adopted, else made through the ledger); None without a
    policy."""
    wanted = policy(tier)
    if wanted is None:
        return None
    name = group_name(run.instance_id, tier_name)
    found = await run.ledger.adopt(TYPE, name)
    if found is not None:
        return found
    await run.ledger.intend(TYPE, name)
    try:
        group = await ServerGroupService(run.services.db, run.services.conf).create(run.ctx, name, wanted, {})
    except errors.CumuloError as exc:
        raise StepFailed(f"tier {tier_name}: server group {name} ({wanted}) refused: {exc}") from exc
    await run.ledger.created(TYPE, name, str(group["uuid"]))
    return str(group["uuid"])


@action("server_group")
async def server_group(run: StepRun) -> Mapping[str, Any]:
    """Step "group:<tier>" (params tier)."""
    from cumulo.paas.engine import actions_net

    tier_name = str(run.step["params"]["tier"])
    tier = actions_net.tier_spec(await run.instance(), tier_name)
    return {"server_group_id": await ensure(run, tier_name, tier)}

"""Application plans (pure): deploy an artifact into a product's directory on every live node of
the tier holding that product, or take it away.

Deploy: one "artifact:<tier>:<replica>:<app>" step (kind "deploy_artifact", PRODUCTS' action) per
live node, with params {tier, replica, node, application, product, version}, and the
paas_applications row (status DEPLOYING_ARTEFACT; the action sets ARTEFACT_DEPLOYED). Undeploy:
"unartifact:<tier>:<replica>:<app>" steps (kind "undeploy_artifact"); the runner deletes the row on
success. A name already deployed is a Conflict; an unknown one NotFound; a product no tier holds
Invalid.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cumulo import errors
from cumulo.paas.engine.base import Plan, Status, StepSpec

GONE = (Status.UNDEPLOYED.value, Status.UNINSTALLED.value, Status.ERROR.value)


def tiers_with(instance: Mapping[str, Any], product: str) -> list[str]:
    env = instance.get("environment") or {}
    tiers = env.get("tiers") or env.get("tierDtos") or []
    return [str(t["name"]) for t in tiers if any(str(p.get("name")) == product for p in t.get("products") or [])]


def _live(nodes: Sequence[Mapping[str, Any]], tiers: Sequence[str]) -> list[Mapping[str, Any]]:
    return sorted((n for n in nodes if n["tier"] in tiers and n["status"] not in GONE and n.get("server_id")),
                  key=lambda n: (str(n["tier"]), int(n["replica"])))


def application_plan(instance: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]],
                     applications: Sequence[Mapping[str, Any]], application: Mapping[str, Any]) -> Plan:
    name, product = str(application["name"]), str(application["product"])
    if any(a["name"] == name for a in applications):
        raise errors.Conflict(f"application {name} is already deployed on {instance['name']}")
    tiers = tiers_with(instance, product)
    if not tiers:
        raise errors.Invalid(f"application {name}: no tier of {instance['name']} has product {product}")
    version = str(application.get("version") or "")
    plan = Plan()
    for n in _live(nodes, tiers):
        plan.steps.append(StepSpec(
            f"artifact:{n['tier']}:{n['replica']}:{name}", "deploy_artifact", (),
            {"tier": n["tier"], "replica": int(n["replica"]), "node": n["name"], "application": name,
             "product": product, "version": version},
        ))
    plan.rows["paas_applications"] = [{
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"paas-app:{instance['id']}:{name}")),
        "env_instance_id": instance["id"], "name": name, "version": version, "product": product,
        "artifact": dict(application.get("artifact") or {}),
        "generation": int(instance.get("app_generation") or 0) + 1, "status": Status.DEPLOYING_ARTEFACT.value,
    }]
    return plan


def undeploy_plan(instance: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]],
                  applications: Sequence[Mapping[str, Any]], name: str) -> Plan:
    app = next((a for a in applications if a["name"] == name), None)
    if app is None:
        raise errors.NotFound(f"application {name} is not deployed on {instance['name']}")
    plan = Plan()
    for n in _live(nodes, tiers_with(instance, str(app["product"]))):
        plan.steps.append(StepSpec(
            f"unartifact:{n['tier']}:{n['replica']}:{name}", "undeploy_artifact", (),
            {"tier": n["tier"], "replica": int(n["replica"]), "node": n["name"], "application": name,
             "product": str(app["product"]), "version": str(app.get("version") or "")},
        ))
    return plan

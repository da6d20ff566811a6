"""Pegasus's inventory shapes (develop DTOs) rendered from the inventory tables (paas/models.py).

- EnvironmentInstancePDto {environmentInstanceName, blueprintName, vdc, description, status, taskId,
  tierDto: [TierPDto]} + Cumulo's `keepOnFailure`, `environmentName`, `error` (an ERROR instance's
  failed step and output).
- TierPDto = TierDto + `tierInstancePDto` [{tierInstanceName, status, taskId, vm, productInstanceDtos}].
- TierInstanceDto {tierInstanceName, tierDto: {name}, replicaNumber, status, vm: VMDto,
  productInstanceDtos} + `fromTemplate` (the template image id when the node booted from one).
- VMDto {id (server id), hostname, fqn, ip, floatingIp, domain}.
- ProductInstanceDto {name, vdc, productReleaseDto: {productName, version}, attributes, taskId} +
  `status`, `fromTemplate` (bool), `outputs`, `steps` [{step, attempt, status, exitCode, signal,
  timedOut, startTime, endTime, output, skippedReason}] (one per recipe run or skip).
- ApplicationInstance {applicationName, version, productName, status, artifact {sha256, size, source}}.
- Event (the autoscaler's paas_events row) {time, tier, policy, metric, value, threshold,
  comparison, decision, reason, fromSize, toSize, taskId}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cumulo.paas.shapes import drop_none, isotime, render_attribute, render_tier

OUTPUT_TAIL = 4096  # characters of a recipe's stdout and stderr shown per step


def product_instance_name(node: str, product: str, version: str) -> str:
    """SDC's product instance name: "<node>_<product>_<version>"."""
    return f"{node}_{product}_{version}"


def _step_status(rec: Mapping[str, Any]) -> str:
    if rec.get("skipped_reason"):
        return "SKIPPED"
    if rec.get("ended_at") is None:
        return "RUNNING"
    if rec.get("timed_out"):
        return "TIMEOUT"
    return "SUCCESS" if rec.get("exit_code") == 0 else "ERROR"


def _tail(text: str | None) -> str:
    text = text or ""
    return text[-OUTPUT_TAIL:]


def render_step(rec: Mapping[str, Any]) -> dict[str, Any]:
    out = "\n".join(t for t in (_tail(rec.get("stdout")), _tail(rec.get("stderr"))) if t)
    return drop_none({
        "step": rec["step"],
        "attempt": rec.get("attempt"),
        "status": _step_status(rec),
        "exitCode": rec.get("exit_code"),
        "signal": rec.get("signal"),
        "timedOut": bool(rec.get("timed_out")),
        "startTime": isotime(rec.get("started_at")),
        "endTime": isotime(rec.get("ended_at")),
        "output": out,
        "skippedReason": rec.get("skipped_reason"),
    })


def render_product_instance(pi: Mapping[str, Any], node: Mapping[str, Any], vdc: str,
                            records: Sequence[Mapping[str, Any]] = (), task_id: int | None = None
                            ) -> dict[str, Any]:
    attrs = pi.get("attributes") or {}
    return drop_none({
        "name": product_instance_name(node["name"], pi["product"], pi["version"]),
        "vdc": vdc,
        "productReleaseDto": {"productName": pi["product"], "version": pi["version"]},
        "attributes": [render_attribute({"key": k, "value": v}) for k, v in attrs.items()]
        if isinstance(attrs, Mapping) else [render_attribute(a) for a in attrs],
        "status": pi["status"],
        "taskId": task_id,
        "fromTemplate": bool(node.get("from_template")),
        "outputs": dict(pi.get("outputs") or {}),
        "steps": [render_step(r) for r in records],
    })


def render_vm(node: Mapping[str, Any]) -> dict[str, Any]:
    return drop_none({
        "id": node.get("server_id"),
        "hostname": node["name"],
        "fqn": node["name"],
        "ip": node.get("ip"),
        "floatingIp": node.get("floating_ip"),
        "domain": "",
    })


def render_tier_instance(node: Mapping[str, Any], vdc: str, products: Sequence[Mapping[str, Any]] = (),
                         records: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                         task_id: int | None = None) -> dict[str, Any]:
    """One node (paas_tier_instances row) with its product instances (and their exec records, by
    product instance id, when given)."""
    recs = records or {}
    return drop_none({
        "tierInstanceName": node["name"],
        "tierDto": {"name": node["tier"]},
        "replicaNumber": node.get("replica"),
        "status": node["status"],
        "taskId": task_id,
        "fromTemplate": node.get("from_template"),
        "vm": render_vm(node),
        "productInstanceDtos": [render_product_instance(p, node, vdc, recs.get(p["id"], ())) for p in products],
    })


def render_env_instance(inst: Mapping[str, Any], nodes: Sequence[Mapping[str, Any]],
                        products: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """A paas_env_instances row, its nodes, and each node's product instances (by node id)."""
    vdc = inst["project_id"]
    tiers = (inst.get("environment") or {}).get("tiers") or []
    out_tiers = []
    for t in tiers:
        dto = render_tier(t)
        dto["tierInstancePDto"] = [
            render_tier_instance(n, vdc, products.get(n["id"], ())) for n in nodes if n["tier"] == t["name"]]
        out_tiers.append(dto)
    err = inst.get("error")
    return drop_none({
        "environmentInstanceName": f"{vdc}-{inst['environment_name']}",
        "blueprintName": inst["name"],
        "environmentName": inst["environment_name"],
        "vdc": vdc,
        "description": inst.get("description") or "",
        "status": inst["status"],
        "taskId": inst.get("task_id"),
        "keepOnFailure": bool(inst.get("keep_on_failure")),
        "error": dict(err) if isinstance(err, Mapping) else err,
        "tierDto": out_tiers,
    })


def render_application(row: Mapping[str, Any]) -> dict[str, Any]:
    art = row.get("artifact") or {}
    return drop_none({
        "applicationName": row["name"],
        "version": row.get("version") or "",
        "productName": row["product"],
        "status": row["status"],
        "artifact": {k: art[k] for k in ("sha256", "size", "source") if k in art},
    })


def render_event(row: Mapping[str, Any]) -> dict[str, Any]:
    return drop_none({
        "time": isotime(row.get("time")),
        "tier": row["tier"],
        "policy": row.get("policy"),
        "metric": row.get("metric"),
        "value": row.get("value"),
        "threshold": row.get("threshold"),
        "comparison": row.get("comparison"),
        "decision": row["decision"],
        "reason": row.get("reason") or "",
        "fromSize": row.get("from_size"),
        "toSize": row.get("to_size"),
        "taskId": row.get("task_id"),
    })


"""Pegasus's JSON shapes (develop dfa844da DTOs, docs/paas.md) <-> the normalised shapes of
paas/graph.py's docstring, and the Task renderer.

Input (`parse_*`): structure only (objects, lists, strings, numbers), each failure an Invalid naming
the field; the catalogue (paas/catalogue.py) checks the meaning (names, ranges, references).
Pegasus's single-element unwrap is accepted on input (an object where a list is expected is a list
of one); output lists are always arrays, empty ones `[]`, and null fields are left out.

Cumulo's extension fields (all optional on input):
- ProductReleaseDto: `metadatas` [{key, value, description}] (SDC's product metadata), `recipes`
  {install, configure, start, reload, stop, uninstall, deploy, undeploy} (shell text;
  `deployArtifact`/`undeployArtifact` are accepted for `deploy`/`undeploy`); on output also
  `builtin` and `public`.
- TierDto: `scalingPolicies` [{name, metric, statistic, comparison, threshold, period,
  evaluationPeriods, adjustmentType, scalingAdjustment, minAdjustmentStep, cooldown}], `metadatas`.
- EnvironmentInstanceDto: `keepOnFailure`, `callback` (as the `callback` header).
- ProductInstanceDto (output): `status`, `steps`, `fromTemplate` (paas/shapes_inventory.py).

`render_task(row, base)` is the one Task JSON renderer (the API and the engine's callbacks use it):
`base` is the family's public root, e.g. "http://127.0.0.1:8774/paas" (conf.public_url + "/paas").
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from typing import Any

from cumulo import errors

# "reload": run after a reconfigure instead of "start" when given; "deploy"/"undeploy": after an
# application artifact is unpacked into / removed from the product's directory.
RECIPE_STEPS = ("install", "configure", "start", "reload", "stop", "uninstall", "deploy", "undeploy")
_RECIPE_ALIASES = {"deployArtifact": "deploy", "undeployArtifact": "undeploy"}

# ---------------------------------------------------------------------------------------------
# input helpers


def as_list(value: Any, where: str) -> list[Any]:
    """A JSON list; null is empty, a lone object is a list of one (Pegasus's unwrapped arrays)."""
    if value is None:
        return []
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise errors.Invalid(f"{where} must be a list")
    return value


def as_object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.Invalid(f"{where} must be a JSON object")
    return value


def as_text(value: Any, where: str, *, required: bool = False, max_len: int = 255) -> str | None:
    """A string field (numbers are taken as their text, as Pegasus's XML-born clients send them)."""
    if value is None or value == "":
        if required:
            raise errors.Invalid(f"{where} is required")
        return None if value is None else ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise errors.Invalid(f"{where} must be a string")
    text = str(value)
    if len(text) > max_len:
        raise errors.Invalid(f"{where} is longer than {max_len} characters")
    if "\x00" in text:
        raise errors.Invalid(f"{where} holds a NUL character")
    return text


def as_int(value: Any, where: str) -> int | None:
    """A whole number (or its decimal text); null is None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise errors.Invalid(f"{where} must be a whole number, not {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value.strip()):
        return int(value.strip())
    raise errors.Invalid(f"{where} must be a whole number, not {str(value)[:64]!r}")


def as_number(value: Any, where: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise errors.Invalid(f"{where} must be a number, not {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and len(value) < 40:
        try:
            return float(value)
        except ValueError:
            pass
    raise errors.Invalid(f"{where} must be a number, not {str(value)[:64]!r}")


def as_bool(value: Any, where: str, default: bool = False) -> bool:
    """true/false, or Pegasus's "true"/"false" strings (TierDto.floatingip)."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
        return value.lower() in ("true", "yes")
    raise errors.Invalid(f"{where} must be true or false, not {str(value)[:64]!r}")


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def isotime(value: dt.datetime | str | None) -> str | None:
    """ISO 8601 in UTC with milliseconds (Pegasus's dates: "2012-11-08T09:13:18.311+01:00")."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------------------------------
# attributes, metadata


def parse_attribute(dto: Any, where: str) -> dict[str, Any]:
    """Attribute {key, value, description, type} -> {key, value, type, description}."""
    d = as_object(dto, where)
    key = as_text(d.get("key"), f"{where}: key", required=True, max_len=1024)
    value = as_text(d.get("value"), f"{where} {key}: value", max_len=1 << 20)
    type_ = as_text(d.get("type"), f"{where} {key}: type", max_len=64)
    if type_ == "":  # absent (null) means Plain, as in Pegasus; an empty type is a malformed one (Pegasus: 400)
        raise errors.Invalid(f"{where} {key}: type is empty (Plain, IP, IPALL, MEMBERS or OUTPUT; leave it out for Plain)")
    return {
        "key": key,
        "value": value or "",
        "type": type_ or "Plain",
        "description": as_text(d.get("description"), f"{where} {key}: description", max_len=4096) or "",
    }


def render_attribute(attr: Mapping[str, Any]) -> dict[str, Any]:
    out = {"key": attr.get("key"), "value": attr.get("value", ""), "type": attr.get("type") or "Plain"}
    if attr.get("description"):
        out["description"] = attr["description"]
    return out


def parse_metadata(dto: Any, where: str) -> dict[str, Any]:
    d = as_object(dto, where)
    key = as_text(d.get("key"), f"{where}: key", required=True, max_len=1024)
    return {
        "key": key,
        "value": as_text(d.get("value"), f"{where} {key}: value", max_len=1 << 20) or "",
        "description": as_text(d.get("description"), f"{where} {key}: description", max_len=4096) or "",
    }


def render_metadata(meta: Mapping[str, Any]) -> dict[str, Any]:
    out = {"key": meta.get("key"), "value": meta.get("value", "")}
    if meta.get("description"):
        out["description"] = meta["description"]
    return out


# ---------------------------------------------------------------------------------------------
# product releases


def parse_product_release(dto: Any) -> dict[str, Any]:
    """ProductReleaseDto -> {name, version, description, metadata, attributes, recipes}."""
    d = as_object(dto, "productRelease")
    name = as_text(d.get("productName", d.get("name")), "productName", required=True)
    recipes_in = d.get("recipes")
    recipes: dict[str, str] = {}
    if recipes_in is not None:
        for step, text in as_object(recipes_in, "recipes").items():
            key = _RECIPE_ALIASES.get(step, step)
            if key not in RECIPE_STEPS:
                raise errors.Invalid(
                    f"recipes: unknown step {step[:64]!r} (one of {', '.join(RECIPE_STEPS)})")
            recipe = as_text(text, f"recipes: {step}", max_len=1 << 20)
            if recipe:
                recipes[key] = recipe
    return {
        "name": name,
        "version": as_text(d.get("version"), "version", required=True, max_len=64),
        "description": as_text(d.get("productDescription", d.get("description")), "productDescription",
                               max_len=4096) or "",
        "metadata": [parse_metadata(m, f"metadatas[{i}]") for i, m in enumerate(as_list(d.get("metadatas"), "metadatas"))],
        "attributes": [parse_attribute(a, f"attributes[{i}]")
                       for i, a in enumerate(as_list(d.get("attributes"), "attributes"))],
        "recipes": recipes,
    }


def render_product_release(row: Mapping[str, Any]) -> dict[str, Any]:
    """A paas_products row (or a snapshot's release) -> ProductReleaseDto with Cumulo's extensions."""
    out: dict[str, Any] = {
        "productName": row["name"],
        "version": row["version"],
        "productDescription": row.get("description") or "",
        "attributes": [render_attribute(a) for a in row.get("attributes") or []],
        "metadatas": [render_metadata(m) for m in row.get("metadata") or []],
        "recipes": dict(row.get("recipes") or {}),
        "builtin": bool(row.get("builtin")),
        "public": not row.get("project_id"),
    }
    return out


def release_name(name: str, version: str) -> str:
    """Pegasus's ProductRelease name, the id in catalog/productRelease/{name}: "<product>-<version>"."""
    return f"{name}-{version}"


# ---------------------------------------------------------------------------------------------
# tiers and environments


def _parse_tier_product(dto: Any, where: str) -> dict[str, Any]:
    d = as_object(dto, where)
    name = as_text(d.get("productName", d.get("name")), f"{where}: productName", required=True)
    return {
        "name": name,
        "version": as_text(d.get("version"), f"{where} ({name}): version", max_len=64),
        "attributes": [parse_attribute(a, f"{where} ({name}): attributes[{i}]")
                       for i, a in enumerate(as_list(d.get("attributes"), f"{where}: attributes"))],
    }


def _parse_network(dto: Any, where: str) -> dict[str, Any]:
    d = as_object(dto, where)
    subnets = []
    for i, s in enumerate(as_list(d.get("subNetworkDto", d.get("subnets")), f"{where}: subNetworkDto")):
        so = as_object(s, f"{where}: subNetworkDto[{i}]")
        subnets.append({"name": as_text(so.get("subnetName", so.get("name")), f"{where}: subnetName") or "",
                        "cidr": as_text(so.get("cidr"), f"{where}: cidr", max_len=64)})
    return {"name": as_text(d.get("networkName", d.get("name")), f"{where}: networkName", required=True),
            "subnets": subnets}


POLICY_FIELDS = {  # DTO key -> normalised key
    "name": "name", "metric": "metric", "statistic": "statistic", "comparison": "comparison",
    "threshold": "threshold", "period": "period", "evaluationPeriods": "evaluation_periods",
    "adjustmentType": "adjustment_type", "scalingAdjustment": "scaling_adjustment",
    "minAdjustmentStep": "min_adjustment_step", "cooldown": "cooldown",
}


def parse_policy(dto: Any, where: str) -> dict[str, Any]:
    """A scalingPolicies entry -> the normalised policy (defaults filled by the catalogue)."""
    d = as_object(dto, where)
    unknown = sorted(set(d) - set(POLICY_FIELDS) - set(POLICY_FIELDS.values()))
    if unknown:
        raise errors.Invalid(f"{where}: unknown field {unknown[0][:64]!r}")

    def get(key: str) -> Any:
        return d.get(key, d.get(POLICY_FIELDS[key]))

    return {
        "name": as_text(get("name"), f"{where}: name", required=True),
        "metric": as_text(get("metric"), f"{where}: metric", max_len=32),
        "statistic": as_text(get("statistic"), f"{where}: statistic", max_len=32),
        "comparison": as_text(get("comparison"), f"{where}: comparison", max_len=8),
        "threshold": as_number(get("threshold"), f"{where}: threshold"),
        "period": as_number(get("period"), f"{where}: period"),
        "evaluation_periods": as_int(get("evaluationPeriods"), f"{where}: evaluationPeriods"),
        "adjustment_type": as_text(get("adjustmentType"), f"{where}: adjustmentType", max_len=64),
        "scaling_adjustment": as_number(get("scalingAdjustment"), f"{where}: scalingAdjustment"),
        "min_adjustment_step": as_int(get("minAdjustmentStep"), f"{where}: minAdjustmentStep"),
        "cooldown": as_number(get("cooldown"), f"{where}: cooldown"),
    }


def render_policy(policy: Mapping[str, Any]) -> dict[str, Any]:
    return drop_none({dto: policy.get(key) for dto, key in POLICY_FIELDS.items()})


def parse_tier(dto: Any, where: str = "tier") -> dict[str, Any]:
    """TierDto -> the normalised tier (graph.py); min/max/initial may be None (the catalogue fills them)."""
    d = as_object(dto, where)
    name = as_text(d.get("name"), f"{where}: name", required=True)
    at = f"tier {name}"
    return {
        "name": name,
        "flavour": as_text(d.get("flavour", d.get("flavor")), f"{at}: flavour"),
        "image": as_text(d.get("image"), f"{at}: image"),
        "keypair": as_text(d.get("keypair"), f"{at}: keypair"),
        "floatingip": as_bool(d.get("floatingip"), f"{at}: floatingip"),
        "region": as_text(d.get("region"), f"{at}: region"),
        "networks": [_parse_network(n, f"{at}: networkDto[{i}]")
                     for i, n in enumerate(as_list(d.get("networkDto"), f"{at}: networkDto"))],
        "security_group": as_text(d.get("securityGroup"), f"{at}: securityGroup"),
        "affinity": as_text(d.get("affinity"), f"{at}: affinity", max_len=64),
        "icono": as_text(d.get("icono"), f"{at}: icono", max_len=2048),
        "min": as_int(d.get("minimumNumberInstances"), f"{at}: minimumNumberInstances"),
        "max": as_int(d.get("maximumNumberInstances"), f"{at}: maximumNumberInstances"),
        "initial": as_int(d.get("initialNumberInstances"), f"{at}: initialNumberInstances"),
        "products": [_parse_tier_product(p, f"{at}: productReleaseDtos[{i}]")
                     for i, p in enumerate(as_list(d.get("productReleaseDtos"), f"{at}: productReleaseDtos"))],
        "metadata": [parse_metadata(m, f"{at}: metadatas[{i}]")
                     for i, m in enumerate(as_list(d.get("metadatas"), f"{at}: metadatas"))],
        "policies": [parse_policy(p, f"{at}: scalingPolicies[{i}]")
                     for i, p in enumerate(as_list(d.get("scalingPolicies"), f"{at}: scalingPolicies"))],
    }


def render_tier(tier: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised tier -> TierDto."""
    out: dict[str, Any] = {
        "name": tier["name"],
        "flavour": tier.get("flavour"),
        "image": tier.get("image"),
        "minimumNumberInstances": tier.get("min"),
        "maximumNumberInstances": tier.get("max"),
        "initialNumberInstances": tier.get("initial"),
        "productReleaseDtos": [
            drop_none({"productName": p["name"], "version": p.get("version"),
                        "attributes": [render_attribute(a) for a in p.get("attributes") or []]})
            for p in tier.get("products") or []],
        "networkDto": [{"networkName": n["name"],
                        "subNetworkDto": [drop_none({"subnetName": s.get("name") or None, "cidr": s.get("cidr")})
                                          for s in n.get("subnets") or []]}
                       for n in tier.get("networks") or []],
        "icono": tier.get("icono"),
        "securityGroup": tier.get("security_group"),
        "keypair": tier.get("keypair"),
        "floatingip": "true" if tier.get("floatingip") else "false",
        "affinity": tier.get("affinity"),
        "region": tier.get("region"),
        "metadatas": [render_metadata(m) for m in tier.get("metadata") or []],
        "scalingPolicies": [render_policy(p) for p in tier.get("policies") or []],
    }
    return drop_none(out)


def parse_environment(dto: Any) -> dict[str, Any]:
    """EnvironmentDto -> {name, description, tiers}."""
    d = as_object(dto, "environment")
    return {
        "name": as_text(d.get("name"), "environment name", required=True),
        "description": as_text(d.get("description"), "description", max_len=4096) or "",
        "tiers": [parse_tier(t, f"tierDtos[{i}]") for i, t in enumerate(as_list(d.get("tierDtos"), "tierDtos"))],
    }


def render_environment(env: Mapping[str, Any], tiers: Sequence[Mapping[str, Any]], vdc: str) -> dict[str, Any]:
    """A paas_environments row and its tiers' specs (in order) -> EnvironmentDto."""
    return {
        "name": env["name"],
        "description": env.get("description") or "",
        "org": env.get("domain_id") or "default",
        "vdc": vdc,
        "tierDtos": [render_tier(t) for t in tiers],
    }


# ---------------------------------------------------------------------------------------------
# tasks


def task_href(base: str, vdc: str, task_id: int) -> str:
    return f"{base}/rest/vdc/{vdc}/task/{task_id}"


def instance_path(vdc: str, name: str, org: str = "default") -> str:
    """The environment instance's path under the family root; an engine stores "/rest/..." paths
    like this one in paas_tasks.result_href and render_task prefixes the public root."""
    return f"/rest/envInst/org/{org}/vdc/{vdc}/environmentInstance/{name}"


_RESULT_TYPES = {"application": "ApplicationInstance", "undeploy_application": "ApplicationInstance"}


def render_task(row: Mapping[str, Any], base: str) -> dict[str, Any]:
    """A paas_tasks row -> Pegasus's Task JSON: {href, startTime, endTime?, status, description, vdc,
    environment?, tier?, result: {href, name, type}?, error: {message, majorErrorCode,
    minorErrorCode, step?, output?}?} (step and output are Cumulo's: the failed step's key and the tail
    of its output). `result_href` may be absolute or a path under the family root ("/rest/...")."""
    vdc = row["project_id"]
    out: dict[str, Any] = {
        "href": task_href(base, vdc, row["id"]),
        "startTime": isotime(row.get("start_time")),
        "endTime": isotime(row.get("end_time")),
        "status": row["status"],
        "description": row.get("description") or "",
        "vdc": vdc,
        "environment": row.get("env_instance_name"),
        "tier": row.get("tier"),
    }
    result = row.get("result_href")
    if result:
        href = f"{base}{result}" if str(result).startswith("/") else str(result)
        kind = str(row.get("kind") or "")
        out["result"] = drop_none({"href": href, "name": row.get("env_instance_name"),
                                    "type": _RESULT_TYPES.get(kind, "EnvironmentInstance")})
    err = row.get("error")
    if err:
        err = err if isinstance(err, Mapping) else {"message": str(err)}
        minor = err.get("minorErrorCode")
        out["error"] = drop_none({
            "message": str(err.get("message") or ""),
            "majorErrorCode": None if err.get("majorErrorCode") is None else str(err["majorErrorCode"]),
            "minorErrorCode": None if minor is None else str(minor),
            "step": err.get("step"),  # Cumulo's: the failed step's key and its output's tail
            "output": err.get("output"),
        })
    return drop_none(out)

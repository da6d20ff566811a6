"""Friendly YAML files -> Pegasus DTOs: env.yaml -> EnvironmentDto, product.yaml -> ProductReleaseDto.

env.yaml:

    name: shop
    description: two tiers
    tiers:
      - name: backend
        image: busybox            # name or id
        flavor: m1.tiny           # or flavour
        min: 1                    # minimumNumberInstances (default 1)
        max: 1                    # maximumNumberInstances (default max(min, initial))
        initial: 1                # initialNumberInstances (default min)
        products:
          - name: kv-backend      # or the short form "kv-backend:1.0"
            version: "1.0"
            attributes:
              ALLOW_FROM: MEMBERS(web)       # the type is read from the value's form ...
              PORT: {value: "8080", type: Plain, description: the port}   # ... or given
      - name: web
        depends_on: [backend]     # tier metadata dep* (an ordering edge); IP/IPALL/OUTPUT refs add their own
        floatingip: true
        networks: [private]       # names, or {name, subnets: [{name, cidr}]}
        keypair: mykey
        security_group: web-sg
        products: ["httpd-web:1.0"]
        policies:                 # autoscaling, Heat's terms (snake_case or camelCase keys)
          - {name: up, metric: cpu, comparison: gt, threshold: 70, period: 5, evaluation_periods: 2,
             adjustment_type: change_in_capacity, scaling_adjustment: 1, cooldown: 10}

product.yaml:

    name: my-web
    version: "1.0"
    description: ...
    metadata: {open_ports: "80", artifact_dir: www}     # or a list of {key, value, description}
    attributes: {GREETING: hello}
    recipes:                      # install, configure, start, reload, stop, uninstall, deploy, undeploy:
      install: |                  # shell text, or {file: path} relative to the YAML file
        mkdir -p "$PAAS_ROOT/my-web"
      start: {file: start.sh}

A file that already is a DTO (it has `tierDtos`, or `productName`) is sent as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

_REF = re.compile(r"^\s*(IP|IPALL|MEMBERS|OUTPUT)\(.*\)\s*$")
# A recipe step -> its key in ProductReleaseDto.recipes ("reload": what a reconfigure runs after configure).
RECIPE_STEPS = {"install": "install", "configure": "configure", "start": "start", "reload": "reload", "stop": "stop",
                "uninstall": "uninstall", "deploy": "deploy", "deploy_artifact": "deploy", "deployArtifact": "deploy",
                "undeploy": "undeploy", "undeploy_artifact": "undeploy", "undeployArtifact": "undeploy"}
_TIER_KEYS = {"name", "description", "image", "flavor", "flavour", "min", "max", "initial", "products",
              "depends_on", "floatingip", "floating_ip", "networks", "keypair", "security_group", "region",
              "affinity", "metadata", "policies", "icon"}
_POLICY_KEYS = {"name", "metric", "statistic", "comparison", "threshold", "period", "evaluation_periods",
                "adjustment_type", "scaling_adjustment", "min_adjustment_step", "cooldown"}


class EnvFileError(ValueError):
    """A YAML file that does not describe an environment or a product; the message names where."""


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def load_yaml(path: str | Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvFileError(f"{path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise EnvFileError(f"{path}: not YAML: {exc}") from None


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise EnvFileError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise EnvFileError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise EnvFileError(f"{where}: expected a whole number, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise EnvFileError(f"{where}: expected a whole number, got {value!r}") from None


def _text(value: Any, where: str) -> str:
    if value is None or isinstance(value, Mapping | list):
        raise EnvFileError(f"{where}: expected a string, got {value!r}")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    extra = sorted(str(k) for k in data if str(k) not in known)
    if extra:
        raise EnvFileError(f"{where}: unknown key(s) {', '.join(extra)} (known: {', '.join(sorted(known))})")


def metadata(value: Any, where: str) -> list[dict[str, str]]:
    """{key: value} or [{key, value, description}] -> Pegasus's Metadata list."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [{"key": str(k), "value": _text(v, f"{where}.{k}")} for k, v in value.items()]
    out = []
    for i, item in enumerate(_list(value, where)):
        m = _mapping(item, f"{where}[{i}]")
        if "key" not in m:
            raise EnvFileError(f"{where}[{i}]: a metadata item needs a key")
        entry = {"key": _text(m["key"], f"{where}[{i}].key"), "value": _text(m.get("value", ""), f"{where}[{i}].value")}
        if m.get("description"):
            entry["description"] = _text(m["description"], f"{where}[{i}].description")
        out.append(entry)
    return out


def attributes(value: Any, where: str) -> list[dict[str, str]]:
    """{KEY: value | {value, type, description}} or [{key, value, type, description}] -> Attributes.
    A value of the form IP(t), IPALL(t), MEMBERS(t) or OUTPUT(t.p.K) gets that type unless given."""
    if value is None:
        return []
    items: list[tuple[str, Any]]
    if isinstance(value, Mapping):
        items = [(str(k), v) for k, v in value.items()]
    else:
        items = []
        for i, item in enumerate(_list(value, where)):
            m = _mapping(item, f"{where}[{i}]")
            if "key" not in m:
                raise EnvFileError(f"{where}[{i}]: an attribute needs a key")
            items.append((_text(m["key"], f"{where}[{i}].key"), {k: v for k, v in m.items() if k != "key"}))
    out = []
    for key, spec in items:
        at = f"{where}.{key}"
        if isinstance(spec, Mapping):
            _unknown(spec, {"value", "type", "description"}, at)
            val = _text(spec.get("value", ""), f"{at}.value")
            type_ = spec.get("type")
            desc = spec.get("description")
        else:
            val, type_, desc = _text(spec, at), None, None
        if type_ is None:
            ref = _REF.match(val)
            type_ = ref.group(1) if ref else "Plain"
        attr = {"key": key, "value": val.strip() if type_ != "Plain" else val, "type": _text(type_, f"{at}.type")}
        if desc:
            attr["description"] = _text(desc, f"{at}.description")
        out.append(attr)
    return out


def _product_ref(item: Any, where: str) -> dict[str, Any]:
    if isinstance(item, str):
        name, sep, version = item.partition(":")
        if not sep or not name or not version:
            raise EnvFileError(f"{where}: a product is {{name, version}} or \"<name>:<version>\", not {item!r}")
        return {"productName": name, "version": version, "attributes": []}
    m = _mapping(item, where)
    _unknown(m, {"name", "version", "attributes", "description"}, where)
    if not m.get("name") or m.get("version") in (None, ""):
        raise EnvFileError(f"{where}: a product needs a name and a version")
    dto: dict[str, Any] = {"productName": _text(m["name"], f"{where}.name"),
                           "version": _text(m["version"], f"{where}.version"),
                           "attributes": attributes(m.get("attributes"), f"{where}.attributes")}
    return dto


def _network(item: Any, where: str) -> dict[str, Any]:
    if isinstance(item, str):
        return {"networkName": item, "subNetworkDto": []}
    m = _mapping(item, where)
    _unknown(m, {"name", "subnets"}, where)
    subnets = []
    for i, s in enumerate(_list(m.get("subnets"), f"{where}.subnets")):
        sm = _mapping(s, f"{where}.subnets[{i}]")
        sub = {"subnetName": _text(sm.get("name"), f"{where}.subnets[{i}].name")}
        if sm.get("cidr"):
            sub["cidr"] = _text(sm["cidr"], f"{where}.subnets[{i}].cidr")
        subnets.append(sub)
    return {"networkName": _text(m.get("name"), f"{where}.name"), "subNetworkDto": subnets}


def _policy(item: Any, where: str) -> dict[str, Any]:
    m = {_snake(str(k)): v for k, v in _mapping(item, where).items()}
    _unknown(m, _POLICY_KEYS, where)
    return {_camel(k): v for k, v in m.items()}


def tier_dto(item: Any, where: str) -> dict[str, Any]:
    t = _mapping(item, where)
    _unknown(t, _TIER_KEYS, where)
    name = _text(t.get("name"), f"{where}.name")
    where = f"tier {name}"
    if not t.get("image"):
        raise EnvFileError(f"{where}: an image is required")
    flavour = t.get("flavour", t.get("flavor"))
    if not flavour:
        raise EnvFileError(f"{where}: a flavor is required")
    lo = _int(t.get("min", 1), f"{where}.min")
    initial = _int(t.get("initial", lo), f"{where}.initial")
    hi = _int(t.get("max", max(lo, initial)), f"{where}.max")
    meta = metadata(t.get("metadata"), f"{where}.metadata")
    for i, dep in enumerate(_list(t.get("depends_on"), f"{where}.depends_on")):
        meta.append({"key": f"dep{i + 1}" if i else "dep", "value": _text(dep, f"{where}.depends_on[{i}]")})
    floating = t.get("floatingip", t.get("floating_ip", False))
    if not isinstance(floating, bool) and str(floating).lower() not in ("true", "false"):
        raise EnvFileError(f"{where}.floatingip: expected true or false, got {floating!r}")
    dto: dict[str, Any] = {
        "name": name,
        "image": _text(t["image"], f"{where}.image"),
        "flavour": _text(flavour, f"{where}.flavor"),
        "minimumNumberInstances": lo,
        "maximumNumberInstances": hi,
        "initialNumberInstances": initial,
        "floatingip": "true" if str(floating).lower() == "true" else "false",
        "productReleaseDtos": [_product_ref(p, f"{where}.products[{i}]")
                               for i, p in enumerate(_list(t.get("products"), f"{where}.products"))],
        "networkDto": [_network(n, f"{where}.networks[{i}]")
                       for i, n in enumerate(_list(t.get("networks"), f"{where}.networks"))],
        "metadatas": meta,
        "scalingPolicies": [_policy(p, f"{where}.policies[{i}]")
                            for i, p in enumerate(_list(t.get("policies"), f"{where}.policies"))],
    }
    for key, field in (("keypair", "keypair"), ("security_group", "securityGroup"), ("region", "region"),
                       ("affinity", "affinity"), ("icon", "icono")):
        if t.get(key) not in (None, ""):
            dto[field] = _text(t[key], f"{where}.{key}")
    return dto


def environment_dto(data: Any, *, name: str | None = None) -> dict[str, Any]:
    """The EnvironmentDto a friendly env.yaml describes (`name` overrides the file's)."""
    env = _mapping(data, "environment file")
    if "tierDtos" in env:  # already a DTO
        dto = dict(env)
    else:
        _unknown(env, {"name", "description", "tiers"}, "environment file")
        tiers = _list(env.get("tiers"), "tiers")
        dto = {"description": _text(env.get("description", ""), "description"),
               "tierDtos": [tier_dto(t, f"tiers[{i}]") for i, t in enumerate(tiers)]}
        if env.get("name") is not None:
            dto["name"] = _text(env["name"], "name")
    if name:
        dto["name"] = name
    if not dto.get("name"):
        raise EnvFileError("environment file: a name is required (in the file or as --name)")
    if not dto.get("tierDtos"):
        raise EnvFileError(f"environment {dto['name']}: at least one tier is required")
    seen: set[str] = set()
    for tier in dto["tierDtos"]:
        if tier.get("name") in seen:
            raise EnvFileError(f"environment {dto['name']}: tier {tier.get('name')} is there twice")
        seen.add(tier.get("name"))
    return dto


def _recipe(value: Any, where: str, base: Path | None) -> str:
    if isinstance(value, Mapping):
        _unknown(value, {"file"}, where)
        rel = Path(_text(value.get("file"), f"{where}.file"))
        path = rel if rel.is_absolute() or base is None else base / rel
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise EnvFileError(f"{where}: {path}: {exc.strerror or exc}") from None
    return _text(value, where)


def product_dto(data: Any, *, base: Path | None = None) -> dict[str, Any]:
    """The ProductReleaseDto a friendly product.yaml describes (recipe files relative to `base`)."""
    p = _mapping(data, "product file")
    if "productName" in p:
        return dict(p)
    _unknown(p, {"name", "version", "description", "metadata", "attributes", "recipes"}, "product file")
    if not p.get("name") or p.get("version") in (None, ""):
        raise EnvFileError("product file: a name and a version are required")
    name = _text(p["name"], "name")
    recipes: dict[str, str] = {}
    for step, text in _mapping(p.get("recipes") or {}, f"product {name}: recipes").items():
        if str(step) not in RECIPE_STEPS:
            raise EnvFileError(f"product {name}: unknown recipe {step!r} (one of {', '.join(sorted(RECIPE_STEPS))})")
        recipes[RECIPE_STEPS[str(step)]] = _recipe(text, f"product {name}: recipes.{step}", base)
    return {
        "productName": name,
        "version": _text(p["version"], "version"),
        "productDescription": _text(p.get("description", ""), "description"),
        "metadatas": metadata(p.get("metadata"), f"product {name}: metadata"),
        "attributes": attributes(p.get("attributes"), f"product {name}: attributes"),
        "recipes": recipes,
    }


def load_environment(path: str | Path, *, name: str | None = None) -> dict[str, Any]:
    return environment_dto(load_yaml(path), name=name)


def load_product(path: str | Path) -> dict[str, Any]:
    return product_dto(load_yaml(path), base=Path(path).parent)

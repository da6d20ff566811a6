"""The catalogue: product releases, environments and their tiers (what can be deployed), with every
check of their meaning (the shapes module checked their structure).

Visibility: a project sees its own products and environments, plus the built-in and public product
releases (paas_products.project_id ""). Built-ins are read-only; public ones are an admin's (the API
checks paas:product:publish). Every query is filtered by the caller's project: another project's
anything is "not found".

Checks, each an Invalid (400) naming the problem (acceptance 6):
- names: products, environments, tiers `[A-Za-z0-9][A-Za-z0-9_.-]{0,62}`, versions likewise (+ `+~`);
- attributes: key `[A-Za-z_][A-Za-z0-9_]{0,63}` (it becomes a shell variable) and none the recipe
  runner refuses (paas/exec.py check_key: PAAS_*, PATH, HOME, IFS...), value without NUL and at
  most 4 KiB, type Plain|IP|IPALL|MEMBERS|OUTPUT with a well-formed reference (graph.parse_ref);
- product metadata: open_ports/open_ports_udp (ports 0-65535 or ranges a-b), installator (only
  "shell"), timeout (1-3600 s), public/template (yes|no), artifact_dir (a relative path), dep*;
- tiers: flavour and image given, 0 <= min <= initial <= max <= MAX_NODES (the numbers named),
  subnet CIDRs, each product release known to the project (or built-in/public), scaling policies
  (Heat's rules through paas/scaling.py);
- the environment: references to tiers it holds, and no dependency cycle (graph.order names it).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import Database, new_uuid, utcnow
from cumulo.paas import graph, scaling
from cumulo.paas.exec import check_key
from cumulo.paas.models import paas_environments, paas_products, paas_tiers
from cumulo.paas.shapes import isotime, release_name

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+~-]{0,63}$")
KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_VALUE = 4096  # bytes of an attribute or metadata value
MAX_RECIPE = 256 * 1024
MAX_NODES = 100
MAX_TIERS = 32
MAX_ITEMS = 64  # products of a tier, attributes of a product, metadata, policies, networks
_PORT_RANGE = re.compile(r"^([0-9]{1,5})(?:-([0-9]{1,5}))?$")
_PATH_PART = re.compile(r"^[A-Za-z0-9_.+-]{1,255}$")


def _plain_path(value: str) -> bool:
    """An artifact_dir as the recipe runner takes it (paas/exec.py artifact_dir): relative to the
    product's directory, or under $PAAS_ROOT, or absolute (in the guest); plain names, no '..'."""
    path = value.strip().removeprefix("$PAAS_ROOT")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return bool(parts) and len(value) <= 1024 and ".." not in parts and all(_PATH_PART.match(p) for p in parts)


def check_name(value: str | None, what: str) -> str:
    if not value or not NAME_RE.match(value):
        raise errors.Invalid(f"{what} {str(value)[:80]!r} is not a valid name "
                             "(letters, digits, '_', '.', '-'; up to 63, starting with a letter or digit)")
    return value


def check_version(value: str | None, what: str) -> str:
    if not value or not VERSION_RE.match(value):
        raise errors.Invalid(f"{what}: version {str(value)[:80]!r} is not valid")
    return value


def _value_size(value: str, where: str) -> None:
    if "\x00" in value:
        raise errors.Invalid(f"{where}: the value holds a NUL character")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_VALUE:
        raise errors.Invalid(f"{where}: the value is longer than {MAX_VALUE} bytes")


def check_attributes(attrs: Sequence[Mapping[str, Any]], where: str) -> None:
    """Keys, values and types of a product's or a tier product's attributes."""
    if len(attrs) > MAX_ITEMS:
        raise errors.Invalid(f"{where}: more than {MAX_ITEMS} attributes")
    seen: set[str] = set()
    for attr in attrs:
        key = str(attr.get("key") or "")
        if not KEY_RE.match(key):
            raise errors.Invalid(f"{where}: malformed attribute key {key[:80]!r} (it must match "
                                 "[A-Za-z_][A-Za-z0-9_]{0,63}: it becomes an environment variable)")
        try:
            check_key(key)  # what the recipe runner refuses (PATH, HOME, IFS, PAAS_*...), refused here
        except errors.Invalid as exc:
            raise errors.Invalid(f"{where}: {exc.message}") from None
        if key in seen:
            raise errors.Invalid(f"{where}: attribute {key} is given twice")
        seen.add(key)
        at = f"{where}, attribute {key}"
        _value_size(str(attr.get("value") or ""), at)
        graph.parse_ref(attr.get("type"), attr.get("value", ""), where=at)


def _check_ports(value: str, where: str) -> None:
    for token in value.replace(",", " ").split():
        m = _PORT_RANGE.match(token)
        if not m:
            raise errors.Invalid(f"{where}: {token[:40]!r} is not a port or a port range a-b")
        low, high = int(m.group(1)), int(m.group(2) or m.group(1))
        if low > 65535 or high > 65535 or low > high:
            raise errors.Invalid(f"{where}: port range {token} is outside 0-65535 or reversed")


def check_product_metadata(metadata: Sequence[Mapping[str, Any]], where: str) -> None:
    if len(metadata) > MAX_ITEMS:
        raise errors.Invalid(f"{where}: more than {MAX_ITEMS} metadata entries")
    for meta in metadata:
        key, value = str(meta.get("key") or ""), str(meta.get("value") or "")
        at = f"{where}, metadata {key[:64]}"
        if not key or len(key) > 255:
            raise errors.Invalid(f"{where}: a metadata key must be 1 to 255 characters")
        _value_size(value, at)
        if key in ("open_ports", "open_ports_udp"):
            _check_ports(value, at)
        elif key == "installator" and value != "shell":
            raise errors.Invalid(f"{at}: installator {value[:40]!r} is not supported (only shell)")
        elif key == "timeout":
            if not re.fullmatch(r"[0-9]{1,4}", value) or not 1 <= int(value) <= 3600:
                raise errors.Invalid(f"{at}: the recipe timeout must be 1 to 3600 seconds, not {value[:40]!r}")
        elif key in ("public", "template") and value not in ("yes", "no"):
            raise errors.Invalid(f"{at}: must be yes or no, not {value[:40]!r}")
        elif key == "artifact_dir" and not _plain_path(value):
            raise errors.Invalid(f"{at}: {value[:80]!r} is not a plain path (relative to the product's directory, "
                                 "or under $PAAS_ROOT or /; no '..')")
        elif key.startswith("dep") and not NAME_RE.match(value) and not VERSION_RE.match(value):
            raise errors.Invalid(f"{at}: {value[:80]!r} does not name a product")


def check_product(product: dict[str, Any]) -> dict[str, Any]:
    """A parsed ProductReleaseDto (shapes.parse_product_release), checked."""
    name = check_name(product["name"], "product")
    check_version(product["version"], f"product {name}")
    where = f"product release {release_name(name, product['version'])}"
    check_attributes(product["attributes"], where)
    check_product_metadata(product["metadata"], where)
    for step, text in product["recipes"].items():
        if len(text.encode("utf-8", "surrogatepass")) > MAX_RECIPE:
            raise errors.Invalid(f"{where}: the {step} recipe is longer than {MAX_RECIPE} bytes")
    return product


def wants_public(product: Mapping[str, Any]) -> bool:
    return any(m.get("key") == "public" and m.get("value") == "yes" for m in product.get("metadata") or [])


# ---------------------------------------------------------------------------------------------
# tiers and policies

POLICY_DEFAULTS: dict[str, Any] = {"statistic": "avg", "period": 60.0, "evaluation_periods": 1,
                                   "adjustment_type": "change_in_capacity", "cooldown": 60.0}


def check_policy(policy: dict[str, Any], where: str) -> dict[str, Any]:
    """A parsed scaling policy with the defaults filled, checked by Heat's rules (paas/scaling.py)."""
    p: dict[str, Any] = {k: (POLICY_DEFAULTS.get(k) if v is None else v) for k, v in policy.items()}
    at = f"{where}, policy {p['name']}"
    check_name(p["name"], f"{where}: policy")
    if p["metric"] not in ("cpu", "memory"):
        raise errors.Invalid(f"{at}: metric must be cpu or memory, not {p['metric']!r}")
    if p["statistic"] != "avg":
        raise errors.Invalid(f"{at}: statistic must be avg, not {p['statistic']!r}")
    if p["comparison"] not in ("gt", "ge", "lt", "le"):
        raise errors.Invalid(f"{at}: comparison must be one of gt, ge, lt, le, not {p['comparison']!r}")
    for field in ("threshold", "scaling_adjustment"):
        if p[field] is None:
            raise errors.Invalid(f"{at}: {field} is required")
    if not 0 <= p["threshold"] <= 100:
        raise errors.Invalid(f"{at}: the threshold is a percentage (0 to 100), not {p['threshold']}")
    if not 0 < p["period"] <= 86400 or not 0 <= p["cooldown"] <= 86400:
        raise errors.Invalid(f"{at}: period must be 1 s to 1 day and cooldown 0 to 1 day")
    if not 1 <= p["evaluation_periods"] <= 100:
        raise errors.Invalid(f"{at}: evaluationPeriods must be 1 to 100")
    if not abs(p["scaling_adjustment"]) <= 1000 or not 0 <= (p["min_adjustment_step"] or 0) <= MAX_NODES:
        raise errors.Invalid(f"{at}: scalingAdjustment must be within -1000 to 1000 and minAdjustmentStep "
                             f"within 0 to {MAX_NODES}")
    try:
        kind = scaling.AdjustmentType(p["adjustment_type"])
    except ValueError:
        raise errors.Invalid(f"{at}: adjustmentType must be one of "
                             f"{', '.join(t.value for t in scaling.AdjustmentType)}") from None
    try:
        scaling.Adjustment(p["scaling_adjustment"], kind, p["min_adjustment_step"])
        scaling.ThresholdRule(scaling.Comparison(p["comparison"]), p["threshold"], p["period"],
                              p["evaluation_periods"])
    except errors.Invalid as exc:
        raise errors.Invalid(f"{at}: {exc.message}") from None
    return p


AFFINITY_POLICIES = ("anti-affinity", "affinity", "soft-anti-affinity", "soft-affinity")  # Nova's


def affinity_policy(tier: Mapping[str, Any]) -> str | None:
    """The tier's `affinity` as a Nova server group policy; None for Pegasus's "None" (or none given);
    Invalid for anything else."""
    value = str(tier.get("affinity") or "").strip()
    if value.lower() in ("", "none"):
        return None
    if value.lower() not in AFFINITY_POLICIES:
        raise errors.Invalid(f"tier {tier.get('name')}: affinity {value[:64]!r} is not None or one of "
                             + ", ".join(AFFINITY_POLICIES))
    return value.lower()


def check_tier(tier: dict[str, Any]) -> dict[str, Any]:
    """A parsed TierDto, checked, with min/max/initial filled (min 1, initial min, max initial)."""
    name = check_name(tier["name"], "tier")
    at = f"tier {name}"
    affinity_policy(tier)
    for field in ("flavour", "image"):
        if not tier.get(field):
            raise errors.Invalid(f"{at}: {field} is required")
    given = {k: tier[k] for k in ("min", "max", "initial")}
    lo = given["min"] if given["min"] is not None else min(1, given["initial"] if given["initial"] is not None else 1)
    initial = given["initial"] if given["initial"] is not None else lo
    hi = given["max"] if given["max"] is not None else max(initial, lo)
    for label, value in (("minimumNumberInstances", lo), ("maximumNumberInstances", hi),
                         ("initialNumberInstances", initial)):
        if not 0 <= value <= MAX_NODES:
            raise errors.Invalid(f"{at}: {label} {value} is outside 0 to {MAX_NODES}")
    if lo > hi:
        raise errors.Invalid(f"{at}: minimumNumberInstances {lo} is greater than maximumNumberInstances {hi}")
    if not lo <= initial <= hi:
        raise errors.Invalid(f"{at}: initialNumberInstances {initial} is not between minimumNumberInstances "
                             f"{lo} and maximumNumberInstances {hi}")
    tier.update(min=lo, max=hi, initial=initial)
    for field, limit in (("products", MAX_ITEMS), ("metadata", MAX_ITEMS), ("policies", MAX_ITEMS),
                         ("networks", MAX_ITEMS)):
        if len(tier[field]) > limit:
            raise errors.Invalid(f"{at}: more than {limit} {field}")
    for net in tier["networks"]:
        for sub in net["subnets"]:
            if sub.get("cidr"):
                try:
                    ipaddress.ip_network(sub["cidr"], strict=False)
                except ValueError:
                    raise errors.Invalid(f"{at}: network {net['name']}: {sub['cidr']!r} is not a CIDR") from None
    seen: set[str] = set()
    for product in tier["products"]:
        pname = check_name(product["name"], f"{at}: product")
        if product.get("version") is not None:
            check_version(product["version"], f"{at}, product {pname}")
        if pname in seen:
            raise errors.Invalid(f"{at}: product {pname} is listed twice")
        seen.add(pname)
        check_attributes(product["attributes"], f"{at}, product {pname}")
    for meta in tier["metadata"]:
        if not meta["key"] or len(meta["key"]) > 255:
            raise errors.Invalid(f"{at}: a metadata key must be 1 to 255 characters")
        _value_size(meta["value"], f"{at}, metadata {meta['key']}")
    names = [p["name"] for p in tier["policies"]]
    if len(set(names)) != len(names):
        raise errors.Invalid(f"{at}: two scaling policies have the same name")
    tier["policies"] = [check_policy(p, at) for p in tier["policies"]]
    return tier


# ---------------------------------------------------------------------------------------------
# the store


def _row(r: Any) -> dict[str, Any]:
    return dict(r._mapping)


def release_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    """A paas_products row as a snapshot's `release` (JSON: times as text)."""
    out = dict(row)
    out["created_at"] = isotime(out.get("created_at"))
    return out


def merged_attributes(release: Mapping[str, Any], given: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The release's default attributes, overridden key by key by the tier's (then the tier's others)."""
    by_key = {a["key"]: dict(a) for a in release.get("attributes") or []}
    for a in given:
        by_key[a["key"]] = {**by_key.get(a["key"], {}), **dict(a)}
    return list(by_key.values())


def _visible(ctx: RequestContext) -> Any:
    return paas_products.c.project_id.in_(["", ctx.project_id or ""])


class Catalogue:
    """CRUD over the catalogue tables, scoped to the caller's project."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- product releases ----------------------------------------------------------------------

    async def list_products(self, ctx: RequestContext) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            rows = (await conn.execute(sa.select(paas_products).where(_visible(ctx)).order_by(
                paas_products.c.name, paas_products.c.version, paas_products.c.project_id))).all()
        return [_row(r) for r in rows]

    async def _find_product(self, conn: AsyncConnection, ctx: RequestContext, ident: str) -> dict[str, Any]:
        rows = [_row(r) for r in (await conn.execute(sa.select(paas_products).where(_visible(ctx)))).all()]
        exact = [r for r in rows if release_name(r["name"], r["version"]) == ident]
        if not exact:
            named = [r for r in rows if r["name"] == ident]
            if len({r["version"] for r in named}) == 1:
                exact = named
        if not exact:
            raise errors.NotFound(f"product release {ident} not found")
        exact.sort(key=lambda r: r["project_id"] == "")  # the project's own first
        return exact[0]

    async def get_product(self, ctx: RequestContext, ident: str) -> dict[str, Any]:
        async with self.db.read() as conn:
            return await self._find_product(conn, ctx, ident)

    async def resolve_release(self, conn: AsyncConnection, ctx: RequestContext, name: str, version: str | None,
                              where: str) -> dict[str, Any]:
        q = sa.select(paas_products).where(_visible(ctx), paas_products.c.name == name)
        if version is not None:
            q = q.where(paas_products.c.version == version)
        rows = [_row(r) for r in (await conn.execute(q)).all()]
        if version is None and len({r["version"] for r in rows}) > 1:
            raise errors.Invalid(f"{where}: product {name} has several releases "
                                 f"({', '.join(sorted({r['version'] for r in rows}))}): name the version")
        if not rows:
            label = release_name(name, version) if version is not None else name
            raise errors.Invalid(f"unknown product release {label} in {where}")
        rows.sort(key=lambda r: r["project_id"] == "")
        return rows[0]

    async def create_product(self, ctx: RequestContext, product: dict[str, Any], *, public: bool) -> dict[str, Any]:
        check_product(product)
        owner = "" if public else (ctx.project_id or "")
        label = release_name(product["name"], product["version"])
        row = {"id": new_uuid(), "project_id": owner, "name": product["name"], "version": product["version"],
               "description": product["description"], "builtin": False, "metadata": product["metadata"],
               "attributes": product["attributes"], "recipes": product["recipes"], "created_at": utcnow()}
        try:
            async with self.db.write() as conn:
                # a project's own release may not shadow a built-in or public one; a public one may
                # share a project's name (that project keeps seeing its own)
                clash = (await conn.execute(sa.select(paas_products.c.project_id).where(
                    _visible(ctx) if not public else paas_products.c.project_id == "",
                    paas_products.c.name == product["name"],
                    paas_products.c.version == product["version"]))).first()
                if clash is not None:
                    where = "a built-in or public" if clash[0] == "" else "this project's"
                    raise errors.Conflict(f"product release {label} already exists ({where})")
                await conn.execute(paas_products.insert().values(**row))
        except IntegrityError:
            raise errors.Conflict(f"product release {label} already exists") from None
        return row

    async def delete_product(self, ctx: RequestContext, ident: str, *, may_publish: bool) -> None:
        async with self.db.write() as conn:
            row = await self._find_product(conn, ctx, ident)
            label = release_name(row["name"], row["version"])
            if row["builtin"]:
                raise errors.Forbidden(f"product release {label} is built in: it can not be deleted")
            if row["project_id"] == "" and not may_publish:
                raise errors.Forbidden(f"product release {label} is public: only an admin may delete it")
            q = sa.select(paas_environments.c.name, paas_tiers.c.name, paas_tiers.c.spec).join(
                paas_tiers, paas_tiers.c.environment_id == paas_environments.c.id)
            if row["project_id"]:
                q = q.where(paas_environments.c.project_id == row["project_id"])
            for env, tier, spec in (await conn.execute(q)).all():
                for p in (spec or {}).get("products", []):
                    if p.get("name") == row["name"] and p.get("version") in (None, row["version"]):
                        raise errors.Conflict(f"product release {label} is used by tier {tier} of environment {env}")
            await conn.execute(paas_products.delete().where(paas_products.c.id == row["id"]))

    # --- environments and tiers ----------------------------------------------------------------

    async def list_environments(self, ctx: RequestContext) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        async with self.db.read() as conn:
            envs = [_row(r) for r in (await conn.execute(sa.select(paas_environments).where(
                paas_environments.c.project_id == ctx.project_id).order_by(paas_environments.c.name))).all()]
            tiers = await self._tiers(conn, [e["id"] for e in envs])
        return [(e, tiers.get(e["id"], [])) for e in envs]

    async def _tiers(self, conn: AsyncConnection, env_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        if not env_ids:
            return out
        rows = (await conn.execute(sa.select(paas_tiers).where(paas_tiers.c.environment_id.in_(env_ids)).order_by(
            paas_tiers.c.position, paas_tiers.c.name))).all()
        for r in rows:
            spec = dict(r.spec or {})
            spec["name"] = r.name
            out.setdefault(r.environment_id, []).append(spec)
        return out

    async def _env(self, conn: AsyncConnection, ctx: RequestContext, name: str) -> dict[str, Any]:
        row = (await conn.execute(sa.select(paas_environments).where(
            paas_environments.c.project_id == ctx.project_id, paas_environments.c.name == name))).first()
        if row is None:
            raise errors.NotFound(f"environment {name} not found")
        return _row(row)

    async def get_environment(self, ctx: RequestContext, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with self.db.read() as conn:
            env = await self._env(conn, ctx, name)
            return env, (await self._tiers(conn, [env["id"]])).get(env["id"], [])

    async def _check_environment(self, conn: AsyncConnection, ctx: RequestContext, env_name: str,
                                 tiers: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each tier's products resolved (release + merged attributes) and the graph checked."""
        if len(tiers) > MAX_TIERS:
            raise errors.Invalid(f"environment {env_name}: more than {MAX_TIERS} tiers")
        names = [t["name"] for t in tiers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise errors.Invalid(f"environment {env_name}: tier {dup[0]} is listed twice")
        graph.order(tiers)  # the references and cycles the tiers' own attributes make, before any lookup
        full = []
        for t in tiers:
            products = []
            for p in t.get("products", []):
                release = await self.resolve_release(conn, ctx, p["name"], p.get("version"), f"tier {t['name']}")
                rel = release_dict(release)
                products.append({"name": p["name"], "version": release["version"],
                                 "attributes": merged_attributes(rel, p.get("attributes", [])), "release": rel})
            full.append({**t, "products": products})
        graph.order(full)
        for t, f in zip(tiers, full, strict=True):  # the releases they resolved to, pinned in the stored tiers
            for p, fp in zip(t.get("products", []), f["products"], strict=True):
                p["version"] = fp["version"]
        return full

    async def create_environment(self, ctx: RequestContext, env: dict[str, Any]) -> dict[str, Any]:
        name = check_name(env["name"], "environment")
        tiers = [check_tier(t) for t in env["tiers"]]
        now = utcnow()
        row = {"id": new_uuid(), "project_id": ctx.project_id, "domain_id": ctx.domain_id, "name": name,
               "description": env["description"], "created_at": now}
        try:
            async with self.db.write() as conn:
                await self._check_environment(conn, ctx, name, tiers)
                if (await conn.execute(sa.select(paas_environments.c.id).where(
                        paas_environments.c.project_id == ctx.project_id, paas_environments.c.name == name))).first():
                    raise errors.Conflict(f"environment {name} already exists")
                await conn.execute(paas_environments.insert().values(**row))
                for i, t in enumerate(tiers):
                    await conn.execute(paas_tiers.insert().values(
                        id=new_uuid(), environment_id=row["id"], name=t["name"], position=i, spec=t, created_at=now))
        except IntegrityError:
            raise errors.Conflict(f"environment {name} already exists") from None
        return row

    async def delete_environment(self, ctx: RequestContext, name: str) -> None:
        async with self.db.write() as conn:
            env = await self._env(conn, ctx, name)
            await conn.execute(paas_tiers.delete().where(paas_tiers.c.environment_id == env["id"]))
            await conn.execute(paas_environments.delete().where(paas_environments.c.id == env["id"]))

    async def put_tier(self, ctx: RequestContext, env_name: str, tier: dict[str, Any], *, replace: str | None
                       ) -> dict[str, Any]:
        """Add `tier` (replace None: a new name, else 409) or replace tier `replace` (404 if absent;
        the body's name may rename it). The whole environment is checked again."""
        tier = check_tier(tier)
        async with self.db.write() as conn:
            env = await self._env(conn, ctx, env_name)
            tiers = (await self._tiers(conn, [env["id"]])).get(env["id"], [])
            names = [t["name"] for t in tiers]
            if replace is None:
                if tier["name"] in names:
                    raise errors.Conflict(f"tier {tier['name']} already exists in environment {env_name}")
                new = [*tiers, tier]
            else:
                if replace not in names:
                    raise errors.NotFound(f"tier {replace} not found in environment {env_name}")
                if tier["name"] != replace and tier["name"] in names:
                    raise errors.Conflict(f"tier {tier['name']} already exists in environment {env_name}")
                new = [tier if t["name"] == replace else t for t in tiers]
            await self._check_environment(conn, ctx, env_name, new)
            now = utcnow()
            if replace is None:
                await conn.execute(paas_tiers.insert().values(
                    id=new_uuid(), environment_id=env["id"], name=tier["name"], position=len(tiers), spec=tier,
                    created_at=now))
            else:
                await conn.execute(paas_tiers.update().where(
                    paas_tiers.c.environment_id == env["id"], paas_tiers.c.name == replace).values(
                    name=tier["name"], spec=tier, updated_at=now))
            await conn.execute(paas_environments.update().where(paas_environments.c.id == env["id"]).values(
                updated_at=now))
        return tier

    async def delete_tier(self, ctx: RequestContext, env_name: str, name: str) -> None:
        async with self.db.write() as conn:
            env = await self._env(conn, ctx, env_name)
            tiers = (await self._tiers(conn, [env["id"]])).get(env["id"], [])
            if name not in [t["name"] for t in tiers]:
                raise errors.NotFound(f"tier {name} not found in environment {env_name}")
            await self._check_environment(conn, ctx, env_name, [t for t in tiers if t["name"] != name])
            await conn.execute(paas_tiers.delete().where(
                paas_tiers.c.environment_id == env["id"], paas_tiers.c.name == name))

    async def product_entry(self, ctx: RequestContext, name: str, version: str | None,
                            attributes: Sequence[Mapping[str, Any]], where: str) -> dict[str, Any]:
        """One product as a snapshot holds it ({name, version, attributes merged over the release's,
        release}) for a POST productInstance; Invalid for an unknown release or a bad attribute."""
        check_attributes(attributes, where)
        async with self.db.read() as conn:
            release = await self.resolve_release(conn, ctx, name, version, where)
        rel = release_dict(release)
        merged = merged_attributes(rel, attributes)
        check_attributes(merged, where)
        return {"name": name, "version": release["version"], "attributes": merged, "release": rel}

    async def snapshot(self, ctx: RequestContext, env_name: str) -> dict[str, Any]:
        """What engine.deploy takes: the environment, normalised, each tier's products with their
        merged attributes and "release" (the full paas_products row), checked again (a product may
        have gone since the environment was written)."""
        async with self.db.read() as conn:
            env = await self._env(conn, ctx, env_name)
            tiers = (await self._tiers(conn, [env["id"]])).get(env["id"], [])
            if not tiers:
                raise errors.Invalid(f"environment {env_name} has no tier to deploy")
            full = await self._check_environment(conn, ctx, env_name, tiers)
        return {"name": env["name"], "description": env["description"], "tiers": full}

"""Machinery for the OpenAPI-driven fuzz tests (test_fuzz_compute.py, test_fuzz_image.py).

Requests come from `cumulo.web.openapi.build_openapi`: for an operation, hypothesis draws path
values (real ids of a small world, or hostile strings), query strings from the declared parameters
(plus unknown ones), and a body that is valid by the operation's own request schema, a valid body
with one field broken, arbitrary JSON, malformed bytes, or a wrong content type. Strings may carry
lone UTF-16 surrogates ("\\ud800", as JSON escapes or as raw ED A0 80 bytes), and a body may be sent
without Content-Length (chunked, in pieces). Every answer must be below 500, and every 4xx must be
the family's native fault, checked against the fault schema the document declares.

Bodies come from `from_schema` below, not hypothesis-jsonschema: its 0.23.1 release calls a
Hypothesis internal (`many.more`) that Hypothesis 6.170 no longer has, so every object schema fails.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
from _asgi_ctx import AsCtx
from hypothesis import strategies as st

from cumulo import conf as conf_mod
from cumulo.compute.api.openapi_ops import NOVA_FAULT
from cumulo.context import RequestContext, expand_roles
from cumulo.identity.api.openapi_ops import KEYSTONE_FAULT
from cumulo.image.openapi_ops import GLANCE_FAULT
from cumulo.volume.api.openapi_ops import CINDER_FAULT

JSON = dict[str, Any]
API = "/compute/v2.1"
FLAVOR = "fuzz"  # the world's own flavor; fuzzed admins may delete the default ones


def make_ctx(project_id: str, *roles: str, user_id: str | None = None) -> RequestContext:
    return RequestContext(user_id=user_id or uuid.uuid4().hex, project_id=project_id, roles=expand_roles(list(roles)))


# ---- the world the fuzz acts on ---------------------------------------------------------------


@dataclass
class World:
    """One cloud shared by a module's fuzz tests: project A (member, reader) and an admin."""

    cloud: Any
    project: str
    admin_project: str
    other_project: str
    clients: dict[str, httpx.AsyncClient]
    ids: dict[str, list[str]] = field(default_factory=dict)  # path parameter → real values
    server_id: str = ""
    image_id: str = ""
    keypair: str = "fuzz-key"
    service_uuids: list[str] = field(default_factory=list)

    @property
    def admin(self) -> httpx.AsyncClient:
        return self.clients["admin"]

    @property
    def member(self) -> httpx.AsyncClient:
        return self.clients["member"]

    async def ensure(self, *, compute: bool = True) -> None:
        """Bring back what earlier fuzz examples deleted or used up, so every test starts alike."""
        a = self.admin
        await self._image()
        self.ids["image_id"] = [self.image_id, *self.ids.get("public_image", [])]
        if not compute:
            return
        # Undo fuzzed quota changes (the default class too), then bound project A: room to create,
        # never unbounded (max_count may be 2**31-1).
        conf = self.cloud.conf
        defaults = {name: getattr(conf, f"quota_{name}") for name in
                    ("instances", "cores", "ram", "key_pairs", "metadata_items", "server_groups", "server_group_members")}
        await a.put(f"{API}/os-quota-class-sets/default", json={"quota_class_set": defaults})
        await a.delete(f"{API}/os-quota-sets/{self.project}")
        r = await a.put(f"{API}/os-quota-sets/{self.project}", json={"quota_set": {"instances": 40, "cores": -1, "ram": -1}})
        assert r.status_code == 200, r.text
        r = await a.get(f"{API}/servers/detail", params={"all_tenants": "1", "project_id": self.project, "limit": "1000"})
        assert r.status_code == 200, r.text
        live = [s["id"] for s in r.json()["servers"] if s["OS-EXT-STS:task_state"] != "deleting"]
        if len(live) > 25:
            for sid in live:
                if sid != self.server_id:
                    await a.delete(f"{API}/servers/{sid}")
        for sid in self.service_uuids:  # undo a fuzzed disable or force-down
            await a.put(f"{API}/os-services/{sid}", json={"status": "enabled", "forced_down": False},
                        headers={"OpenStack-API-Version": "compute 2.53"})
        r = await a.get(f"{API}/flavors/{FLAVOR}")
        if r.status_code == 404:
            r = await a.post(f"{API}/flavors", json={"flavor": {"id": FLAVOR, "name": f"fuzz-{uuid.uuid4().hex[:6]}",
                                                                "ram": 64, "vcpus": 1, "disk": 1}})
            assert r.status_code == 200, r.text
        if self.server_id not in live:
            r = await self.member.post(
                f"{API}/servers",
                json={"server": {"name": "fuzz-vm", "imageRef": await self._image(), "flavorRef": FLAVOR,
                                 "metadata": {"k": "v"}}},
                headers={"OpenStack-API-Version": "compute 2.1"},
            )
            assert r.status_code == 202, r.text
            self.server_id = r.json()["server"]["id"]
        # Sub-resources the paths name ("k", "t"); the calls may fail (e.g. locked server): fine.
        await a.post(f"{API}/servers/{self.server_id}/metadata", json={"metadata": {"k": "v"}})
        await a.put(f"{API}/servers/{self.server_id}/tags/t", headers={"OpenStack-API-Version": "compute 2.26"})
        await a.post(f"{API}/flavors/{FLAVOR}/os-extra_specs", json={"extra_specs": {"k": "v"}})
        r = await self.member.get(f"{API}/os-keypairs/{self.keypair}")
        if r.status_code == 404:
            r = await self.member.post(f"{API}/os-keypairs", json={"keypair": {"name": self.keypair}})
            assert r.status_code == 200, r.text
        r = await a.get(f"{API}/servers/{self.server_id}/os-instance-actions")
        actions = [x["request_id"] for x in r.json()["instanceActions"]] if r.status_code == 200 else []
        self.ids.update(
            server_id=[self.server_id], request_id=actions[:1], name=[self.keypair],
        )
        await self._network_ids()

    async def volume_ids(self) -> None:
        """Ids for os-volumes, os-snapshots (below 2.36) and os-volume_attachments: an available
        volume with a snapshot, and a volume attached to the server (made again when deleted). Only
        the compute fuzz asks: other suites count project A's volumes."""
        m, base, v21 = self.member, f"/volume/v3/{self.project}", {"OpenStack-API-Version": "compute 2.1"}

        async def status(kind: str, rid: str) -> str | None:
            r = await m.get(f"{base}/{kind}s/{rid}")
            return str(r.json()[kind]["status"]) if r.status_code == 200 else None

        async def wait(kind: str, rid: str, *want: str) -> None:
            for _ in range(500):
                if await status(kind, rid) in (*want, "error", None):
                    return
                await asyncio.sleep(0.02)

        vols = self.ids.get("volume_id", [])
        if not vols or await status("volume", vols[0]) != "available":
            r = await m.post(f"{base}/volumes", json={"volume": {"size": 1, "name": "fuzz-cvol"}})
            vols = [r.json()["volume"]["id"]] if r.status_code == 202 else []
            for vid in vols:
                await wait("volume", vid, "available")
        snaps = self.ids.get("snapshot_id", [])
        if vols and (not snaps or await status("snapshot", snaps[0]) != "available"):
            r = await m.post(f"{base}/snapshots", json={"snapshot": {"volume_id": vols[0], "name": "fuzz-csnap"}})
            snaps = [r.json()["snapshot"]["id"]] if r.status_code == 202 else []
            for sid in snaps:
                await wait("snapshot", sid, "available")
        r = await m.get(f"{API}/servers/{self.server_id}/os-volume_attachments")
        attached = [a["volumeId"] for a in r.json().get("volumeAttachments", [])] if r.status_code == 200 else []
        if not attached:
            r = await m.post(f"{base}/volumes", json={"volume": {"size": 1, "name": "fuzz-catt"}})
            if r.status_code == 202:
                vid = r.json()["volume"]["id"]
                await wait("volume", vid, "available")
                r = await m.post(f"{API}/servers/{self.server_id}/os-volume_attachments", headers=v21,
                                 json={"volumeAttachment": {"volumeId": vid}})
                attached = [vid] if r.status_code == 200 else []
                if attached:
                    await wait("volume", vid, "in-use")
        self.ids.update(volume_id=vols[:1] + attached[:1], snapshot_id=snaps[:1])

    async def _network_ids(self) -> None:
        """Ids for the network proxies (below 2.36) and os-interface: a group with a rule, a floating
        IP, the server's port (each made again when a fuzz example deleted it)."""
        m, v21 = self.member, {"OpenStack-API-Version": "compute 2.1"}
        r = await m.get(f"{API}/os-security-groups", headers=v21)
        fuzz = [g for g in (r.json().get("security_groups", []) if r.status_code == 200 else []) if g["name"] == "fuzz-sg"]
        if not fuzz:
            r = await m.post(f"{API}/os-security-groups", headers=v21,
                             json={"security_group": {"name": "fuzz-sg", "description": ""}})
            fuzz = [r.json()["security_group"]] if r.status_code == 200 else []
        rules = [x["id"] for g in fuzz[:1] for x in g["rules"]]
        if fuzz and not rules:
            r = await m.post(f"{API}/os-security-group-rules", headers=v21, json={"security_group_rule": {
                "parent_group_id": fuzz[0]["id"], "ip_protocol": "tcp", "from_port": 22, "to_port": 22}})
            rules = [r.json()["security_group_rule"]["id"]] if r.status_code == 200 else []
        r = await m.get(f"{API}/os-floating-ips", headers=v21)
        fips = [f["id"] for f in r.json().get("floating_ips", [])] if r.status_code == 200 else []
        if not fips:
            r = await m.post(f"{API}/os-floating-ips", headers=v21, json={})
            fips = [r.json()["floating_ip"]["id"]] if r.status_code == 200 else []
        r = await m.get(f"{API}/servers/{self.server_id}/os-interface")
        ports = [i["port_id"] for i in r.json().get("interfaceAttachments", [])] if r.status_code == 200 else []
        self.ids.update(group_id=[g["id"] for g in fuzz[:1]], rule_id=rules[:1], fip_id=fips[:1], port_id=ports[:1])

    async def _image(self) -> str:
        if self.image_id:
            r = await self.member.get(f"/image/v2/images/{self.image_id}")
            if r.status_code == 200 and r.json()["status"] == "active":
                return self.image_id
            if r.status_code == 200 and r.json()["status"] == "deactivated":
                await self.member.post(f"/image/v2/images/{self.image_id}/actions/reactivate")
                return self.image_id
        self.image_id = await upload_image(self.member, "fuzz-image", tags=["t"])
        return self.image_id


async def upload_image(client: httpx.AsyncClient, name: str, **props: Any) -> str:
    r = await client.post("/image/v2/images", json={"name": name, "disk_format": "raw", "container_format": "bare", **props})
    assert r.status_code == 201, r.text
    image_id: str = r.json()["id"]
    r = await client.put(f"/image/v2/images/{image_id}/file", content=b"\0" * 1024,
                         headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return image_id


async def create_project(app: Any, name: str) -> str:
    """A real Keystone project (compute checks that quota targets exist)."""
    ctx = make_ctx("bootstrap", "admin")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(app, ctx)), base_url="http://cumulo.test") as c:
        r = await c.post("/identity/v3/projects", json={"project": {"name": f"{name}-{uuid.uuid4().hex[:8]}", "domain_id": "default"}})
        assert r.status_code == 201, r.text
        project_id: str = r.json()["project"]["id"]
        return project_id


async def start_world(tmp: Path) -> AsyncIterator[World]:
    """A started Cloud (fake driver, one extra fake host) and the world on it."""
    from cumulo.runtime import Cloud

    settings = conf_mod.load(
        env={}, state_dir=tmp / "state", port=8080, power_sync_interval=3600.0, fake_hosts=1, local_driver="fake"
    )
    cloud = Cloud(settings)
    await cloud.start()
    app = cloud.asgi_app()
    project, admin_project, other = [await create_project(app, name) for name in ("fuzz-a", "fuzz-admin", "fuzz-b")]
    member_user = uuid.uuid4().hex
    ctxs = {
        "member": make_ctx(project, "member", user_id=member_user),
        "reader": make_ctx(project, "reader", user_id=member_user),
        "admin": make_ctx(admin_project, "admin"),
    }
    clients = {
        role: httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(app, ctx)), base_url="http://cumulo.test")
        for role, ctx in ctxs.items()
    }
    world = World(cloud, project, admin_project, other, clients)
    try:
        public = await upload_image(world.admin, "fuzz-public", visibility="public")
        services, hyps = [], []
        for version in ("2.1", "2.53"):
            mv = {"OpenStack-API-Version": f"compute {version}"}
            services += (await world.admin.get(f"{API}/os-services", headers=mv)).json()["services"]
            hyps += (await world.admin.get(f"{API}/os-hypervisors", headers=mv)).json()["hypervisors"]
        world.service_uuids = [str(s["id"]) for s in services if not str(s["id"]).isdigit()]
        world.ids = {
            "public_image": [public],
            "key": ["k", "nokey"],
            "tag": ["t", "nope"],
            "network": ["private", "public"],
            "flavor_id": ["1", "42", FLAVOR],
            "project_id": [project, admin_project, other],
            "class_name": ["default"],
            "service_id": [str(s["id"]) for s in services] + ["enable", "disable", "force-down"],
            "hypervisor_id": [str(h["id"]) for h in hyps],
            "pattern": [cloud.conf.host_name, "fake"],
            "member_id": [other],
            "alias": ["os-volumes", "OS-DCF", "nope"],
        }
        await world.ensure()
        yield world
    finally:
        for c in clients.values():
            await c.aclose()
        await cloud.stop()


# ---- strategies -------------------------------------------------------------------------------

_PRINTABLE = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def _name_text() -> st.SearchStrategy[str]:
    edge = st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp", "Zs"))
    return st.tuples(edge, st.text(_PRINTABLE, max_size=40)).map(lambda t: t[0] + t[1]).filter(
        lambda s: not s[-1].isspace() and len(s) <= 255
    )


# Strategies for the compute schemas' own formats, so "valid" bodies really are valid.
CUSTOM_FORMATS: dict[str, st.SearchStrategy[str]] = {
    "name": _name_text(),
    "name_with_leading_trailing_spaces": st.text(_PRINTABLE, min_size=1, max_size=40).filter(lambda s: s.strip() != ""),
    "printable": st.text(_PRINTABLE, max_size=60),
    "uuid": st.uuids().map(str),
    "base64": st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
}

# Text with a lone UTF-16 surrogate: json.dumps writes it as a "\\ud800" escape, which Python's
# json.loads accepts but nothing downstream can encode (issue 8: a 500 in 15 fields).
SURROGATE_TEXT: st.SearchStrategy[str] = st.tuples(
    st.text(max_size=8), st.characters(categories=["Cs"]), st.text(max_size=8)
).map("".join)

# Values that break things: wrong types, sizes and shapes.
HOSTILE: st.SearchStrategy[Any] = st.sampled_from(
    [
        None, True, False, 0, -1, -(2**63), 2**64, 1.5, -0.0, 1e308, "", " ", "-1", "0", "abc", "\x00", "\u202e",
        "x" * 256, "y" * 70000, [], [None], {}, {"a": "b"}, "not-a-uuid", str(uuid.uuid4()),
        "1; DROP TABLE instances", "../../etc/passwd", "%s%s%n", "🙂" * 300, "\ud800", "a\udfffb", {"\udc80": "v"},
    ]
) | st.text(max_size=30) | SURROGATE_TEXT | st.integers() | st.floats(allow_nan=True, allow_infinity=True)

ANY_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40) | SURROGATE_TEXT,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=15), c, max_size=4),
    max_leaves=12,
)

MALFORMED: st.SearchStrategy[bytes] = st.sampled_from(
    [
        b"", b" ", b"{", b"}", b"{'a': 1}", b'{"a": }', b"\xff\xfe\x00", b"[" * 50, b'{"a": 1}{', b"nul", b"NaN",
        b'{"server": {"name": "\xc3\x28"}}', b"\x00" * 16, b'"just a string"', b"12", b"true",
        b'{"a":' * 30 + b"1" + b"}" * 30, b"[" * 5000, b"[" * 3000 + b"]" * 3000,
        b'"\\ud800"', b'{"name": "\\udfff"}', b'{"\\ud800": 1}', b'[{"op": "add", "path": "/\\udc80", "value": 1}]',
        b'{"name": "\xed\xa0\x80"}', b'{"server": {"name": "a\\ud800b"}}', b"\xef\xbb\xbf{}", b'{"name": "\\ud83d\\ude00"}',
    ]
) | st.binary(max_size=64)

BAD_PATH: st.SearchStrategy[str] = st.sampled_from(
    [
        "0", "-1", "1" * 40, "-" + "9" * 20, "9223372036854775808", "x" * 300, "z" * 3000, "null", "None", "..", "%", "a b", "ü", "\u202e", "%00", "\t",
        "00000000-0000-0000-0000-000000000000", "{id}", "'", '"', "1.5", "true", "[]", "detail",
    ]
) | st.uuids().map(str) | st.text(min_size=1, max_size=20)

QUERY_VALUES: st.SearchStrategy[str] = st.sampled_from(
    [
        "", "-1", "0", "1", "2", "1000", "1001", "99999999999999999999", "-99999999999999999999",
        "9223372036854775808", "true", "false", "yes", "1.5", "1e400",
        "2020-01-01T00:00:00Z", "2020-13-45", "not-a-date", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
        "gt:9999-12-31T23:59:59-23:59", "lt:0001-01-01T00:00:00+23:59", "asc", "desc", "name", "created_at", "%", "[", "(",
        "*", "\\", "(?P<x", ".*", "ACTIVE", "active", "public", "private", "in:a,b", "gte:2020-01-01T00:00:00Z",
        'in:"a,b', "x" * 300, "\x00",
    ]
) | st.text(max_size=20) | st.uuids().map(str)


STANDARD_FORMATS: dict[str, st.SearchStrategy[str]] = {
    "date-time": st.datetimes().map(lambda d: d.isoformat() + "Z"),
    "ipv4": st.ip_addresses(v=4).map(str),
    "ipv6": st.ip_addresses(v=6).map(str),
    "regex": st.sampled_from([".*", "fuzz", "^f", "vm$", "[a-z]+"]),
}


def _merge(base: JSON, extra: JSON) -> JSON:
    out = {k: v for k, v in base.items() if k not in ("oneOf", "anyOf", "allOf")}
    for k, v in extra.items():
        if k == "properties" and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def _types(schema: JSON) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return list(kind)
    if isinstance(kind, str):
        return [kind]
    if "properties" in schema or "patternProperties" in schema:
        return ["object"]
    if "items" in schema:
        return ["array"]
    return ["null", "boolean", "integer", "string", "object", "array"]


def from_schema(schema: Any, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that (mostly) satisfy a JSON schema: the subset of JSON Schema the API schemas use.
    Best effort on purpose: a value that misses a rule is still a useful fuzz input."""
    if schema is True or schema == {} or schema is None:
        return ANY_JSON if depth < 3 else st.none()
    if schema is False:
        return st.nothing()
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return st.one_of([from_schema(_merge(schema, sub), depth) for sub in schema[key]])
    if "allOf" in schema:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for sub in schema["allOf"]:
            merged = _merge(merged, sub)
        return from_schema(merged, depth)
    return st.one_of([_typed(schema, t, depth) for t in _types(schema)])


def _typed(schema: JSON, kind: str, depth: int) -> st.SearchStrategy[Any]:
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if "exclusiveMinimum" in schema:
            lo = int(schema["exclusiveMinimum"]) + 1
        return st.integers(min_value=lo, max_value=hi)
    if kind == "number":
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(min_value=lo, max_value=schema.get("maximum"), allow_nan=False, allow_infinity=False,
                         exclude_min="exclusiveMinimum" in schema)
    if kind == "string":
        return _string(schema)
    if kind == "array":
        items = schema.get("items", {})
        lo = schema.get("minItems", 0)
        hi = min(schema.get("maxItems", lo + 3), lo + 3)
        unique = (lambda x: json.dumps(x, sort_keys=True)) if schema.get("uniqueItems") else None
        return st.lists(from_schema(items, depth + 1), min_size=lo, max_size=hi, unique_by=unique)
    if kind == "object":
        return _object(schema, depth)
    return st.nothing()


def _string(schema: JSON) -> st.SearchStrategy[str]:
    lo = schema.get("minLength", 0)
    hi = schema.get("maxLength")
    fmt = schema.get("format")
    strategy: st.SearchStrategy[str]
    if fmt in CUSTOM_FORMATS or fmt in STANDARD_FORMATS:
        strategy = CUSTOM_FORMATS[fmt] if fmt in CUSTOM_FORMATS else STANDARD_FORMATS[fmt]
        if "pattern" in schema:
            strategy = strategy.filter(re.compile(schema["pattern"]).search)
    elif "pattern" in schema:
        pattern: str = schema["pattern"]
        strategy = st.from_regex(pattern, fullmatch=pattern.startswith("^") and pattern.endswith("$"))
    else:
        return st.text(min_size=lo, max_size=min(hi, lo + 40) if hi is not None else lo + 40)
    return strategy.filter(lambda s: lo <= len(s) <= (hi if hi is not None else len(s)))


def _object(schema: JSON, depth: int) -> st.SearchStrategy[JSON]:
    props: JSON = schema.get("properties", {})
    required = [k for k in schema.get("required", []) if k in props]
    optional = [k for k in props if k not in required]
    extra: list[st.SearchStrategy[tuple[str, Any]]] = [
        st.tuples(st.from_regex(pattern, fullmatch=True), from_schema(sub, depth + 1))
        for pattern, sub in schema.get("patternProperties", {}).items()
    ]
    additional = schema.get("additionalProperties", True)
    if isinstance(additional, dict) and additional:
        extra.append(st.tuples(st.text(min_size=1, max_size=12), from_schema(additional, depth + 1)))
    lo = schema.get("minProperties", 0)
    hi = schema.get("maxProperties")

    @st.composite
    def build(draw: Any) -> JSON:
        out: JSON = {k: draw(from_schema(props[k], depth + 1)) for k in required}
        for k in optional:
            # Sparse on purpose: with a dozen optional fields, one odd one would sink every body.
            if draw(st.integers(0, 3)) == 0:
                out[k] = draw(from_schema(props[k], depth + 1))
        if extra:
            for key, value in draw(st.lists(st.one_of(extra), min_size=max(0, lo - len(out)), max_size=3)):
                out.setdefault(key, value)
        if hi is not None:
            out = dict(list(out.items())[:hi])
        return out

    return build()


def _valid_body(schema: JSON) -> st.SearchStrategy[Any]:
    return from_schema(schema)


def _with_real_refs(body: Any, refs: dict[str, list[Any]], draw: Callable[[Any], Any]) -> Any:
    """Swap well-known reference fields (imageRef, flavorRef, ...) for real ids, at any depth."""
    if isinstance(body, dict):
        out = {}
        for k, v in body.items():
            if k in refs and refs[k] and draw(st.booleans()):
                out[k] = draw(st.sampled_from(refs[k]))
            else:
                out[k] = _with_real_refs(v, refs, draw)
        return out
    if isinstance(body, list):
        return [_with_real_refs(v, refs, draw) for v in body]
    return body


def _paths_in(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths_in(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths_in(v, (*prefix, i))
    return out


def _mutate(body: Any, draw: Callable[[Any], Any]) -> Any:
    """Break one thing in an otherwise valid body: a wrong value, an unknown field, a lost field."""
    paths = _paths_in(body)
    if not paths:
        return draw(HOSTILE)
    where = draw(st.sampled_from(paths))
    body = json.loads(json.dumps(body))
    parent = body
    for step in where[:-1]:
        parent = parent[step]
    last = where[-1]
    how = draw(st.sampled_from(["replace", "unknown", "drop"]))
    if how == "replace":
        parent[last] = draw(HOSTILE)
    elif how == "unknown" and isinstance(parent, dict):
        parent[draw(st.sampled_from(["bogus", "x" * 300, "", "__proto__", "\ud800"]) | st.text(max_size=10))] = draw(HOSTILE)
    elif isinstance(parent, dict):
        parent.pop(last, None)
    else:
        parent[last] = draw(HOSTILE)
    return body


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    content: bytes | None
    # Sent without Content-Length, in pieces of this many bytes (Transfer-Encoding: chunked); 0: whole.
    chunked: int = 0

    def describe(self) -> str:
        shown = (self.content or b"")[:400]
        how = f" chunked={self.chunked}" if self.chunked else ""
        return f"{self.method} {self.url} params={self.params!r} headers={self.headers!r}{how} body={shown!r}"

    def body(self) -> Any:
        """The content as httpx sends it: bytes (with Content-Length) or an async stream (without)."""
        if not self.chunked or self.content is None:
            return self.content
        data, size = self.content, max(self.chunked, len(self.content) // 64 + 1)  # at most ~64 pieces

        async def pieces() -> AsyncIterator[bytes]:
            for i in range(0, len(data), size):
                yield data[i:i + size]

        return pieces()


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def call_strategy(path: str, method: str, operation: JSON, ids: dict[str, list[str]],
                  refs: dict[str, list[Any]], base_headers: dict[str, str],
                  seeds: Callable[[], list[Any]] | None = None) -> st.SearchStrategy[Call]:
    """Requests for one OpenAPI operation: real or hostile path ids, declared and unknown query
    parameters, and a valid, broken, random or malformed body. `seeds()` gives known-good bodies
    (rules a schema cannot say, such as "imageRef unless booting from volume"), sent as they are
    and broken."""
    path_names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
    query_params = [p for p in operation.get("parameters", []) if p["in"] == "query"]
    body_spec = operation.get("requestBody", {}).get("content", {})
    media, content = next(iter(body_spec.items())) if body_spec else (None, {})
    schema = content.get("schema")
    valid = _valid_body(schema) if schema is not None and media != "application/octet-stream" else None

    @st.composite
    def build(draw: Any) -> Call:
        url = path
        for name in path_names:
            real = ids.get(name) or []
            value = draw(st.sampled_from(real) if real and draw(st.integers(0, 3)) else BAD_PATH)
            url = url.replace("{" + name + "}", quote(value, safe=""))
        params: list[tuple[str, str]] = []
        for p in draw(st.lists(st.sampled_from(query_params), max_size=3)) if query_params else []:
            items = p["schema"].get("items", p["schema"])
            choices = QUERY_VALUES
            if "enum" in items:
                choices = st.sampled_from([str(e) for e in items["enum"]]) | QUERY_VALUES
            params.append((p["name"], draw(choices)))
        if draw(st.integers(0, 5)) == 0:
            params.append((draw(st.sampled_from(["bogus", "x" * 300, "", "limit", "marker"])), draw(QUERY_VALUES)))
        headers = dict(base_headers)
        content: bytes | None = None
        if media == "application/octet-stream":
            headers["Content-Type"] = draw(st.sampled_from(["application/octet-stream", "text/plain", ""]))
            content = draw(st.binary(max_size=2048))
        elif media is not None:
            assert valid is not None
            kinds = ["valid", "valid", "valid", "broken", "broken", "json", "malformed", "ctype"]
            examples = seeds() if seeds is not None else []
            if examples:
                kinds += ["seed", "seed", "seed", "seed-broken", "seed-broken"]
            kind = draw(st.sampled_from(kinds))
            headers["Content-Type"] = media
            if kind == "seed":
                content = _dumps(draw(st.sampled_from(examples)))
            elif kind == "seed-broken":
                content = _dumps(_mutate(draw(st.sampled_from(examples)), draw))
            elif kind == "valid":
                content = _dumps(_with_real_refs(draw(valid), refs, draw))
            elif kind == "broken":
                content = _dumps(_mutate(_with_real_refs(draw(valid), refs, draw), draw))
            elif kind == "json":
                content = _dumps(draw(ANY_JSON))
            elif kind == "malformed":
                content = draw(MALFORMED)
            else:
                content = _dumps(draw(valid))
                headers["Content-Type"] = draw(st.sampled_from(["text/plain", "application/xml", "", "application/json-patch+json"]))
        elif draw(st.integers(0, 4)) == 0:
            # A body where none is expected.
            headers["Content-Type"] = "application/json"
            content = draw(MALFORMED | ANY_JSON.map(_dumps))
        # A quarter of the bodies come without Content-Length, in pieces (as a chunked upload does).
        chunked = draw(st.sampled_from([1, 7, 4096])) if content and draw(st.integers(0, 3)) == 0 else 0
        return Call(method.upper(), url, params, headers, content, chunked)

    return build()


# (method, path template) → status code → count; lets a test check the fuzz got past validation.
STATS: dict[tuple[str, str], dict[int, int]] = {}


async def send(client: httpx.AsyncClient, call: Call, template: str = "") -> httpx.Response:
    headers = {k: v for k, v in call.headers.items() if v != ""}
    try:
        resp = await asyncio.wait_for(
            client.request(call.method, call.url, params=tuple(call.params), headers=headers, content=call.body()), timeout=30
        )
    except Exception as exc:  # the app crashed: in a real server this is a 500
        raise AssertionError(f"app raised {exc!r} for {call.describe()}") from exc
    counts = STATS.setdefault((call.method, template or call.url), {})
    counts[resp.status_code] = counts.get(resp.status_code, 0) + 1
    return resp


def check(resp: httpx.Response, call: Call, fault_schema: JSON, role: str) -> None:
    """No 5xx; a 4xx is the family's native fault."""
    where = f"[{role}] {call.describe()}\n→ {resp.status_code} {resp.text[:600]}"
    assert resp.status_code < 500, where
    if 400 <= resp.status_code < 500 and call.method != "HEAD":
        assert resp.headers.get("content-type", "").startswith("application/json"), where
        try:
            body = resp.json()
        except ValueError:
            raise AssertionError(f"4xx body is not JSON: {where}") from None
        try:
            jsonschema.validate(body, fault_schema)
        except jsonschema.ValidationError as exc:
            raise AssertionError(f"4xx body is not the native fault ({exc.message}): {where}") from None
        codes = [v.get("code") for v in body.values() if isinstance(v, dict)] if "message" not in body else [body["code"]]
        assert any(str(c).startswith(str(resp.status_code)) for c in codes), where


# Cinder's fault names for the statuses whose name never varies (409 may be conflictingRequest or
# another name, 400 always badRequest).
CINDER_KINDS = {400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound", 413: "overLimit"}


def assert_fault(resp: httpx.Response, status: int, contains: str | None = None) -> None:
    """`status`, in the native fault format of the family the URL belongs to."""
    url = resp.request.url.path
    where = f"{resp.request.method} {url} → {resp.status_code} {resp.text[:400]}"
    assert resp.status_code == status, where
    if url.startswith("/occi"):  # OCCI's faults: a text line, or {"error": {code, message}} for JSON
        if resp.headers.get("content-type", "").startswith("application/occi+json"):
            assert resp.json()["error"]["code"] == status, where
            message = resp.json()["error"]["message"]
        else:
            assert resp.headers.get("content-type", "").startswith(("text/plain", "text/occi")), where
            message = resp.text
        assert message.strip() and "OCCI/1.2" in resp.headers.get("server", ""), where
        if contains is not None:
            assert contains in message, where
        return
    body = resp.json()
    if url.startswith("/paas"):  # Pegasus's {"message", "code"}
        assert resp.headers.get("content-type", "").startswith("application/json"), where
        assert set(body) == {"message", "code"} and body["code"] == status, where
        assert isinstance(body["message"], str) and body["message"].strip(), where
        if contains is not None:
            assert contains in body["message"], where
        return
    if url.startswith("/compute"):
        jsonschema.validate(body, NOVA_FAULT)
        inner = next(iter(body.values()))
        assert inner["code"] == status, where
        message = inner["message"]
    elif url.startswith("/volume"):
        jsonschema.validate(body, CINDER_FAULT)
        (kind, inner), = body.items()
        assert inner["code"] == status, where
        assert kind == CINDER_KINDS.get(status, kind), where
        message = inner["message"]
    elif url.startswith("/image"):
        jsonschema.validate(body, GLANCE_FAULT)
        assert body["code"].startswith(f"{status} "), where
        message = body["message"]
    else:
        jsonschema.validate(body, KEYSTONE_FAULT)
        assert body["error"]["code"] == status, where
        message = body["error"]["message"]
    if contains is not None:
        assert contains in message, where


def operations(doc: JSON) -> list[tuple[str, str, JSON]]:
    return [(path, method, o) for path, item in doc["paths"].items() for method, o in item.items()]



"""Server bodies as the Nova API reference defines them, per microversion and per view.

One declarative table lists every field with the microversions that show it, the views it appears
in (show, detail, update, rebuild), whether only admins see it and when it is conditional. The
builders pick the applicable fields once per request, then map plain row dicts: no per-row queries.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from cumulo.compute import states as st
from cumulo.compute.api import _common
from cumulo.compute.api.microversion import Version, v
from cumulo.compute.volumes import volumes_attached
from cumulo.db import isotime

Row = dict[str, Any]
SHOW, DETAIL, UPDATE, REBUILD = "show", "detail", "update", "rebuild"
ALL_VIEWS = frozenset({SHOW, DETAIL, UPDATE, REBUILD})
FULL_VIEWS = frozenset({SHOW, DETAIL})

PROGRESS_STATUSES = frozenset({"ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"})
FAULT_STATUSES = frozenset({"ERROR", "DELETED"})
# From 2.75 the PUT and rebuild responses carry everything GET shows.
ALL_ATTRS_IN_UPDATE = v("2.75")


@dataclass
class ViewContext:
    request: Request
    version: Version
    is_admin: bool
    view: str
    root: str
    api_root: str
    default_az: str
    faults: dict[str, Row] = field(default_factory=dict)
    host_status: dict[str, str] = field(default_factory=dict)
    # server uuid -> its block device mappings (os-extended-volumes:volumes_attached)
    volumes: dict[str, list[Row]] = field(default_factory=dict)

    @classmethod
    def of(cls, request: Request, view: str, is_admin: bool, default_az: str) -> ViewContext:
        return cls(
            request=request,
            version=_common.version(request),
            is_admin=is_admin,
            view=view,
            root=_common.root(request),
            api_root=_common.api_root(request),
            default_az=default_az,
        )


Getter = Callable[[Row, ViewContext], Any]
Predicate = Callable[[Row, ViewContext], bool]


@dataclass(frozen=True)
class Field:
    key: str
    get: Getter
    since: str = "2.1"
    until: str | None = None
    views: frozenset[str] = ALL_VIEWS
    # For update/rebuild views: shown only from this version (None: always).
    compact_since: str | None = None
    admin: bool = False
    when: Predicate | None = None

    def applies(self, view: str, version: Version, is_admin: bool) -> bool:
        if view not in self.views or version < v(self.since):
            return False
        if self.until is not None and version > v(self.until):
            return False
        if self.admin and not is_admin:
            return False
        if view in (UPDATE, REBUILD) and self.compact_since and version < v(self.compact_since):
            return False
        return True


def host_id(project_id: str, host: str | None) -> str:
    """Nova's hostId: an opaque per-project id of the host."""
    return hashlib.sha224((project_id + host).encode()).hexdigest() if host else ""


def status(row: Row) -> str:
    if row.get("deleted"):
        return "DELETED"
    return st.status_of(row["vm_state"], row["task_state"])


def _perfect(value: Any) -> str | None:
    # Nova renders these datetimes as naive ISO with microseconds (no "Z").
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") if value else None


def _addresses(row: Row, vc: ViewContext) -> dict[str, list[dict[str, Any]]]:
    if row["vm_state"] == st.BUILDING:
        return {}
    extended = vc.view in FULL_VIEWS or vc.version >= ALL_ATTRS_IN_UPDATE
    out: dict[str, list[dict[str, Any]]] = {}
    for net, ips in (row.get("addresses") or {}).items():
        out[net] = [
            {"version": ip.get("version", 4), "addr": ip.get("addr")}
            | (
                {"OS-EXT-IPS:type": ip.get("OS-EXT-IPS:type", "fixed"), "OS-EXT-IPS-MAC:mac_addr": ip.get("OS-EXT-IPS-MAC:mac_addr")}
                if extended
                else {}
            )
            for ip in ips
        ]
    return out


def _flavor_ref(row: Row, vc: ViewContext) -> dict[str, Any]:
    flavor = row.get("flavor") or {}
    fid = str(flavor.get("flavorid", ""))
    return {"id": fid, "links": [{"rel": "bookmark", "href": f"{vc.root}/flavors/{fid}"}]}


def _flavor_embedded(row: Row, vc: ViewContext) -> dict[str, Any]:
    flavor = row.get("flavor") or {}
    return {
        "vcpus": int(flavor.get("vcpus", 0)),
        "ram": int(flavor.get("memory_mb", 0)),
        "disk": int(flavor.get("root_gb", 0)),
        "ephemeral": int(flavor.get("ephemeral_gb", 0)),
        "swap": int(flavor.get("swap", 0)),
        "original_name": flavor.get("name", ""),
        "extra_specs": {str(k): str(val) for k, val in (flavor.get("extra_specs") or {}).items()},
    }


def _image(row: Row, vc: ViewContext) -> Any:
    ref = row.get("image_ref")
    if not ref:
        return ""
    return {"id": ref, "links": [{"rel": "bookmark", "href": f"{vc.root}/images/{ref}"}]}


def _fault(row: Row, vc: ViewContext) -> dict[str, Any]:
    f = vc.faults[row["uuid"]]
    out = {"code": f["code"], "created": isotime(f["created_at"]), "message": f["message"]}
    if f.get("details") and (vc.is_admin or f["code"] != 500):
        out["details"] = f["details"]
    return out


def _az(row: Row, vc: ViewContext) -> str:
    az = row.get("availability_zone")
    if not az and row.get("host"):
        az = vc.default_az
    return az or ""


def _sm(row: Row, key: str) -> Any:
    return (row.get("system_metadata") or {}).get(key)


FIELDS: tuple[Field, ...] = (
    Field("id", lambda r, vc: r["uuid"]),
    Field("name", lambda r, vc: r["display_name"]),
    Field("status", lambda r, vc: r["_status"]),
    Field("tenant_id", lambda r, vc: r["project_id"] or ""),
    Field("user_id", lambda r, vc: r["user_id"] or ""),
    Field("metadata", lambda r, vc: dict(r.get("metadata") or {})),
    Field("hostId", lambda r, vc: host_id(r["project_id"], r.get("host"))),
    Field("image", _image),
    Field("flavor", _flavor_ref, until="2.46"),
    Field("flavor", _flavor_embedded, since="2.47"),
    Field("created", lambda r, vc: isotime(r["created_at"])),
    Field("updated", lambda r, vc: isotime(r["updated_at"])),
    Field("addresses", _addresses),
    Field("accessIPv4", lambda r, vc: r.get("access_ip_v4") or ""),
    Field("accessIPv6", lambda r, vc: r.get("access_ip_v6") or ""),
    Field("links", lambda r, vc: _links(r, vc)),
    Field("OS-DCF:diskConfig", lambda r, vc: "AUTO" if _sm(r, "auto_disk_config") else "MANUAL"),
    Field("fault", _fault, when=lambda r, vc: r["_status"] in FAULT_STATUSES and r["uuid"] in vc.faults),
    Field("progress", lambda r, vc: r.get("progress") or 0, when=lambda r, vc: r["_status"] in PROGRESS_STATUSES),
    Field("OS-EXT-AZ:availability_zone", _az, compact_since="2.75"),
    Field("config_drive", lambda r, vc: r.get("config_drive") or "", compact_since="2.75"),
    Field("key_name", lambda r, vc: r.get("key_name"), views=frozenset({SHOW, DETAIL, UPDATE}), compact_since="2.75"),
    Field("key_name", lambda r, vc: r.get("key_name"), since="2.54", views=frozenset({REBUILD})),
    Field("OS-SRV-USG:launched_at", lambda r, vc: _perfect(r.get("launched_at")), compact_since="2.75"),
    Field("OS-SRV-USG:terminated_at", lambda r, vc: _perfect(r.get("terminated_at")), compact_since="2.75"),
    Field(
        "security_groups",
        lambda r, vc: [{"name": n} for n in r.get("security_groups") or []],
        compact_since="2.75",
        when=lambda r, vc: bool(r.get("security_groups")),
    ),
    Field("OS-EXT-STS:task_state", lambda r, vc: r.get("task_state"), compact_since="2.75"),
    Field("OS-EXT-STS:vm_state", lambda r, vc: r.get("vm_state"), compact_since="2.75"),
    Field("OS-EXT-STS:power_state", lambda r, vc: r.get("power_state") or 0, compact_since="2.75"),
    Field("os-extended-volumes:volumes_attached",
          lambda r, vc: volumes_attached(vc.volumes.get(r["uuid"], []), with_delete_flag=vc.version >= v("2.3")),
          compact_since="2.75"),
    Field("OS-EXT-SRV-ATTR:host", lambda r, vc: r.get("host"), compact_since="2.75", admin=True),
    Field("OS-EXT-SRV-ATTR:instance_name", lambda r, vc: f"instance-{r['id']:08x}", compact_since="2.75", admin=True),
    Field("OS-EXT-SRV-ATTR:hypervisor_hostname", lambda r, vc: r.get("node"), compact_since="2.75", admin=True),
    Field("OS-EXT-SRV-ATTR:hostname", lambda r, vc: r.get("hostname") or "", since="2.3", compact_since="2.75", admin=True),
    Field("OS-EXT-SRV-ATTR:kernel_id", lambda r, vc: "", since="2.3", compact_since="2.75", admin=True),
    Field("OS-EXT-SRV-ATTR:ramdisk_id", lambda r, vc: "", since="2.3", compact_since="2.75", admin=True),
    Field("OS-EXT-SRV-ATTR:launch_index", lambda r, vc: r.get("launch_index") or 0, since="2.3", compact_since="2.75", admin=True),
    Field("OS-EXT-SRV-ATTR:reservation_id", lambda r, vc: r.get("reservation_id"), since="2.3", compact_since="2.75", admin=True),
    Field(
        "OS-EXT-SRV-ATTR:root_device_name",
        lambda r, vc: _sm(r, "root_device_name") or ("/dev/vda" if r.get("launched_at") else None),
        since="2.3",
        compact_since="2.75",
        admin=True,
    ),
    # The rebuild view carries user_data under its own key from 2.57 instead.
    Field(
        "OS-EXT-SRV-ATTR:user_data", lambda r, vc: r.get("user_data"), since="2.3",
        views=frozenset({SHOW, DETAIL, UPDATE}), compact_since="2.75", admin=True,
    ),
    Field("locked", lambda r, vc: bool(r.get("locked")), since="2.9"),
    Field(
        "host_status", lambda r, vc: vc.host_status.get(r.get("host") or "", "UNKNOWN") if r.get("host") else "",
        since="2.16", compact_since="2.75", admin=True,
    ),
    Field("description", lambda r, vc: r.get("display_description"), since="2.19"),
    Field("tags", lambda r, vc: list(r.get("tags") or []), since="2.26"),
    Field("trusted_image_certificates", lambda r, vc: _sm(r, "trusted_certs"), since="2.63"),
    # The groups the server belongs to (at most one in Nova); filled in by the server's handler.
    Field("server_groups", lambda r, vc: list(r.get("_server_groups") or []), since="2.71", views=frozenset({SHOW, UPDATE, REBUILD})),
    Field("locked_reason", lambda r, vc: r.get("locked_reason"), since="2.73"),
    Field("user_data", lambda r, vc: r.get("user_data"), since="2.57", views=frozenset({REBUILD})),
)


def _links(row: Row, vc: ViewContext) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"{vc.api_root}/servers/{row['uuid']}"},
        {"rel": "bookmark", "href": f"{vc.root}/servers/{row['uuid']}"},
    ]


def fields_for(vc: ViewContext) -> tuple[Field, ...]:
    return _fields(vc.view, vc.version, vc.is_admin)


@functools.lru_cache(maxsize=1024)
def _fields(view: str, version: Version, is_admin: bool) -> tuple[Field, ...]:
    """The fields a view shows at a version, picked once per (view, version, admin)."""
    return tuple(f for f in FIELDS if f.applies(view, version, is_admin))


def render(row: Row, vc: ViewContext, fields: tuple[Field, ...]) -> dict[str, Any]:
    row["_status"] = status(row)
    return {f.key: f.get(row, vc) for f in fields if f.when is None or f.when(row, vc)}


def server(row: Row, vc: ViewContext) -> dict[str, Any]:
    return render(row, vc, fields_for(vc))


def servers(rows: list[Row], vc: ViewContext) -> list[dict[str, Any]]:
    fields = fields_for(vc)
    return [render(r, vc, fields) for r in rows]


def index(rows: list[Row], vc: ViewContext) -> list[dict[str, Any]]:
    return [{"id": r["uuid"], "name": r["display_name"], "links": _links(r, vc)} for r in rows]


def created(row: Row, vc: ViewContext, security_groups: list[dict[str, Any]], admin_pass: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row["uuid"],
        "links": _links(row, vc),
        "OS-DCF:diskConfig": "AUTO" if _sm(row, "auto_disk_config") else "MANUAL",
        "security_groups": security_groups,
    }
    if admin_pass is not None:
        out["adminPass"] = admin_pass
    return out

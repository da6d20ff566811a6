"""/v2.1/servers: create, list (index and detail), show, update and delete."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import errors, policy
from cumulo.compute import netports
from cumulo.compute import states as st
from cumulo.compute.api import _common
from cumulo.compute.api import server_views as views
from cumulo.compute.api.deps import services_of
from cumulo.compute.api.microversion import Version, v
from cumulo.compute.api.schemas import servers as schema
from cumulo.compute.api.schemas._base import (
    b64decode_strict,
    bool_from_string,
    is_uuid_like,
    parse_isotime,
    validate_query,
)
from cumulo.compute.service import bdm, networking, server_create, server_show, softdelete
from cumulo.compute.service.boot import CreateRequest, generate_password
from cumulo.compute.service.listing import ListQuery, normalise_sort
from cumulo.compute.service.volume_attachments import VolumeAttachmentService
from cumulo.context import RequestContext
from cumulo.web.http import empty, json_response

policy.register(
    {
        "compute:servers:index": policy.READER,
        "compute:servers:detail": policy.READER,
        "compute:servers:index:get_all_tenants": policy.ADMIN,
        "compute:servers:detail:get_all_tenants": policy.ADMIN,
        "compute:servers:allow_all_filters": policy.ADMIN,
        "compute:servers:show": policy.READER,
        "compute:servers:show:host_status": policy.ADMIN,
        "compute:servers:show:extended_attributes": policy.ADMIN,
        "compute:servers:create": policy.MEMBER,
        "compute:servers:create:forced_host": policy.ADMIN,
        "compute:servers:create:requested_destination": policy.ADMIN,
        "compute:servers:create:attach_volume": policy.MEMBER,
        "compute:servers:update": policy.MEMBER,
        "compute:servers:delete": policy.MEMBER,
    }
)

MAX_LIMIT = 1000
PAGING = ("sort_key", "sort_dir", "limit", "marker")
TAG_FILTERS = ("tags", "tags-any", "not-tags", "not-tags-any")

# Filters a non-admin may use, by the microversion that introduced them (Nova's search options).
USER_FILTERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("2.1", ("reservation_id", "name", "status", "image", "flavor", "ip", "changes-since", "all_tenants")),
    ("2.5", ("ip6",)),
    ("2.26", TAG_FILTERS),
    ("2.66", ("changes-before",)),
    ("2.73", ("locked",)),
)


def _user_filters(ver: Version) -> set[str]:
    return {name for since, names in USER_FILTERS if ver >= v(since) for name in names}


def _view_ctx(request: Request, ctx: RequestContext, view: str) -> views.ViewContext:
    # The admin view: OS-EXT-SRV-ATTR:*, host_status and fault details.
    admin_view = policy.allowed(ctx, "compute:servers:show:extended_attributes")
    return views.ViewContext.of(request, view, admin_view, services_of(request).conf.default_availability_zone)


# --- list ---


def _states_for(statuses: list[str]) -> tuple[list[str], list[str | None] | None]:
    """Nova's task_and_vm_state_from_status: vm_states, and task_states unless a default matched."""
    vm_states: set[str] = set()
    tasks: set[str | None] = set()
    any_default = False
    for status in statuses:
        for vm, task, exact in st.filters_for_status(status):
            vm_states.add(vm)
            if exact:
                tasks.add(task)
            else:
                any_default = True
    return sorted(vm_states), (None if any_default else sorted(tasks, key=str))


def build_query(request: Request, ctx: RequestContext, params: dict[str, list[str]], detail: bool) -> ListQuery | None:
    """Query parameters to a ListQuery, with Nova's rules; None means "nothing can match"."""
    ver = _common.version(request)
    opts = {k: vals for k, vals in params.items() if k not in PAGING}
    if not policy.allowed(ctx, "compute:servers:allow_all_filters"):
        allowed = _user_filters(ver)
        opts = {k: vals for k, vals in opts.items() if k in allowed}
    for key in opts:
        if key in schema.JOINED_TABLE_PARAMS or key.startswith("_"):
            raise errors.Invalid(f"Invalid filter field: {key}.")
    last = {k: vals[-1] for k, vals in opts.items()}
    q = ListQuery(project_id=ctx.project_id, detail=detail)

    if "status" in opts:
        vm_states, tasks = _states_for(opts["status"])
        if not vm_states:
            if ver >= v("2.38"):
                raise errors.Invalid("Invalid status value")
            return None
        q.vm_states, q.task_states = vm_states, tasks
    elif "vm_state" in opts:
        q.vm_states = opts["vm_state"]
    if "task_state" in opts and "status" not in opts:
        q.task_states = [None if t in ("", "None") else t for t in opts["task_state"]]

    for key, attr in (("changes-since", "changes_since"), ("changes-before", "changes_before")):
        if key in last:
            try:
                setattr(q, attr, parse_isotime(last[key]))
            except ValueError:
                raise errors.Invalid(f"Invalid filter field: {key}.") from None
    if q.changes_since and q.changes_before and q.changes_before < q.changes_since:
        raise errors.Invalid("The value of changes-since must be less than or equal to changes-before.")

    if "deleted" in last:
        q.deleted = bool_from_string(last["deleted"], default=False)
    elif q.changes_since or q.changes_before:
        q.deleted = None  # recently deleted servers show up, as DELETED
    if q.vm_states == [st.DELETED]:
        if not ctx.is_admin:
            raise errors.Forbidden("Only administrators may list deleted instances")
        q.deleted = True

    if ver >= v("2.26"):
        q.tags = last["tags"].split(",") if "tags" in last else []
        q.tags_any = last["tags-any"].split(",") if "tags-any" in last else []
        q.not_tags = last["not-tags"].split(",") if "not-tags" in last else []
        q.not_tags_any = last["not-tags-any"].split(",") if "not-tags-any" in last else []

    all_tenants = False
    if "all_tenants" in last:
        all_tenants = bool_from_string(last["all_tenants"], strict=True) if last["all_tenants"] else True
    if all_tenants:
        policy.authorize(ctx, f"compute:servers:{'detail' if detail else 'index'}:get_all_tenants")
        q.project_id = None
        project = last.get("project_id") or last.get("tenant_id")
        if project:
            q.project_id = project

    if "locked" in last:
        q.locked = bool_from_string(last["locked"], strict=True)
    if "flavor" in last:
        q.flavor = last["flavor"].rstrip("/").split("/")[-1]
    if "ip" in last:
        q.ip = last["ip"]
    if "ip6" in last:
        q.ip6 = last["ip6"]
    for key in ("user_id", "image", "image_ref", "uuid", "host"):
        if key in opts:
            q.exact[key] = opts[key]
    for key in ("name", "display_name", "description", "display_description", "hostname", "key_name", "node",
                "reservation_id", "availability_zone", "locked_by", "config_drive", "access_ip_v4", "access_ip_v6",
                "launch_index", "power_state", "progress"):
        if key in last:
            q.regex[key] = last[key]

    limit = int(params["limit"][-1]) if "limit" in params else MAX_LIMIT
    q.limit = min(limit, MAX_LIMIT)
    q.marker = params["marker"][-1] if "marker" in params else None
    keys = [k.strip() for k in params.get("sort_key", [])] or ["created_at"]
    dirs = [d.strip() for d in params.get("sort_dir", [])] or ["desc"]
    ignored = schema.IGNORED_SORT_KEYS_V273 if ver >= v("2.73") else schema.IGNORED_SORT_KEYS
    kept_keys: list[str] = []
    kept_dirs: list[str] = []
    for i, key in enumerate(keys):
        if key in ignored:
            continue
        if key in ("host", "node") and not ctx.is_admin:
            raise errors.Forbidden(f"Only administrators can sort servers by {key}")
        kept_keys.append(key)
        if i < len(dirs):
            kept_dirs.append(dirs[i])
    kept_dirs += dirs[len(keys):]
    q.sort = normalise_sort(kept_keys, kept_dirs)
    return q


async def _list(request: Request, detail: bool) -> Response:
    ctx = await _common.caller(request)
    policy.authorize(ctx, "compute:servers:detail" if detail else "compute:servers:index")
    ver = _common.version(request)
    params = _common.query_lists(request)
    query_schema = schema.INDEX_QUERY.for_version(ver)
    if query_schema is not None:
        validate_query(query_schema, params)
    q = build_query(request, ctx, params, detail)
    if q is None:
        return json_response({"servers": []})
    with_status = detail and ver >= v("2.16") and policy.allowed(ctx, "compute:servers:show:host_status")
    svc = _common.compute_service(request)
    rows, faults, statuses = await svc.list_servers(q, with_faults=detail, with_host_status=with_status)
    if detail and svc.network is not None:  # the addresses as server show has them: from the ports, now
        await networking.refresh_addresses(svc.db, svc.network, ctx, rows)
    vc = _view_ctx(request, ctx, views.DETAIL)
    vc.faults, vc.host_status = faults, statuses
    if detail:
        vc.volumes = await VolumeAttachmentService(svc).of_servers([r["uuid"] for r in rows])
    body: dict[str, Any] = {"servers": views.servers(rows, vc) if detail else views.index(rows, vc)}
    if q.limit and len(rows) == q.limit:
        body["servers_links"] = _common.next_link(request, "servers/detail" if detail else "servers", rows[-1]["uuid"])
    return json_response(body)


async def index(request: Request) -> Response:
    return await _list(request, detail=False)


async def detail(request: Request) -> Response:
    return await _list(request, detail=True)


# --- create ---


def _networks(raw: Any, ver: Version, max_count: int) -> Any:
    """Nova's checks on the form of requested networks (the network service checks that they exist
    when the ports are allocated: compute/service/networking.py)."""
    if isinstance(raw, str) or raw is None:
        return raw
    ports: list[str] = []
    out = []
    for net in raw:
        port, fixed_ip = net.get("port"), net.get("fixed_ip")
        if port:
            if port in ports:
                raise errors.Invalid(f"Port ID '{port}' was specified twice: you cannot attach a port multiple times.")
            if fixed_ip is not None:
                raise errors.Invalid(
                    f"Specified Fixed IP '{fixed_ip}' cannot be used with port '{port}': the two cannot be specified together."
                )
            ports.append(port)
        else:
            if "uuid" not in net:
                raise errors.Invalid("Bad network format: missing 'uuid'")
            if not is_uuid_like(net["uuid"]):
                raise errors.Invalid(f"Bad networks format: network uuid is not in proper format ({net['uuid']})")
        if max_count > 1 and fixed_ip is not None:
            raise errors.Invalid("max_count cannot be greater than 1 if an fixed_ip is specified.")
        if max_count > 1 and port:
            raise errors.Invalid(
                "Unable to launch multiple instances with a single configured port ID. "
                "Please launch your instance one by one with different ports."
            )
        out.append({k: net[k] for k in ("uuid", "port", "fixed_ip", "tag") if net.get(k) is not None})
    return out


async def create(request: Request) -> Response:
    ctx = await _common.caller(request)
    ver = _common.version(request)
    data = await _common.body(request, schema.CREATE)
    server: dict[str, Any] = data["server"]
    policy.authorize(ctx, "compute:servers:create")
    name = server["name"].strip()
    min_count = int(server.get("min_count", 1))
    max_count = int(server.get("max_count", min_count))
    if min_count > max_count:
        raise errors.Invalid("min_count must be <= max_count")
    user_data = server.get("user_data")
    if user_data is not None and b64decode_strict(user_data) is None:
        raise errors.Invalid("User data needs to be valid base 64.")
    requested_host = server.get("host") if ver >= v("2.74") else None
    requested_node = server.get("hypervisor_hostname") if ver >= v("2.74") else None
    if requested_host or requested_node:
        policy.authorize(ctx, "compute:servers:create:requested_destination")
        if ":" in (server.get("availability_zone") or ""):
            raise errors.Invalid(
                "One mechanism with host and/or hypervisor_hostname and another mechanism with zone:host:node are "
                "mutually exclusive."
            )
    plan = bdm.parse(server)  # block_device_mapping(_v2): Nova's checks, 400 in its words
    groups = server.get("security_groups")
    group_names = sorted({g["name"] for g in groups if g.get("name")}) if groups is not None else ["default"]
    # The project's Neutron groups, by name (400 as Nova for an unknown one): the check runs in
    # create_servers (beside its reads on PostgreSQL); a request failing first still gets its error.
    known = _common.security_group_service(request).check_known(ctx.project_id or "", group_names)
    try:
        req = _create_request(server, data, ver, plan, name, user_data, min_count, max_count, group_names,
                              requested_host, requested_node)
    except BaseException:
        await known
        raise
    admin_pass = server.get("adminPass") or generate_password()
    rows, resv = await server_create.create_servers(_common.compute_service(request), ctx, req, precheck=known)
    sgs = _common.security_group_service(request)
    for row in rows:  # the requested groups on the ports the create made
        made = [{"id": p} for p in netports.port_ids_of(row) if p not in netports.user_ports_of(row)]
        await sgs.apply_on_create(ctx.project_id or "", group_names, made)
    if bool_from_string(server.get("return_reservation_id", False)):
        return json_response({"reservation_id": resv}, status=202)
    vc = _view_ctx(request, ctx, views.SHOW)
    body = views.created(rows[0], vc, groups if groups is not None else [{"name": "default"}], admin_pass)
    return json_response({"server": body}, status=202, headers={"Location": body["links"][0]["href"]})


def _create_request(server: dict[str, Any], data: dict[str, Any], ver: Version, plan: bdm.BootPlan, name: str,
                    user_data: str | None, min_count: int, max_count: int, group_names: list[str],
                    requested_host: str | None, requested_node: str | None) -> CreateRequest:
    return CreateRequest(
        name=name,
        flavor_ref=str(server["flavorRef"]).rstrip("/").split("/")[-1],
        image_ref=plan.image_ref or "",
        block_devices=plan,
        description=server.get("description") if ver >= v("2.19") else name,
        key_name=server.get("key_name"),
        metadata=server.get("metadata") or {},
        user_data=user_data,
        availability_zone=server.get("availability_zone"),
        min_count=min_count,
        max_count=max_count,
        security_groups=group_names,
        requested_networks=_networks(server.get("networks"), ver, max_count),
        access_ip_v4=server.get("accessIPv4"),
        access_ip_v6=_common.canonical_ipv6(server.get("accessIPv6")),
        config_drive=bool_from_string(server.get("config_drive", False)),
        auto_disk_config=server.get("OS-DCF:diskConfig") == "AUTO",
        tags=list(dict.fromkeys(server.get("tags") or [])) if ver >= v("2.52") else [],
        trusted_certs=server.get("trusted_image_certificates") if ver >= v("2.63") else None,
        scheduler_hints=data.get("os:scheduler_hints") or data.get("OS-SCH-HNT:scheduler_hints") or {},
        requested_host=requested_host,
        requested_node=requested_node,
    )


# --- one server ---


def _needs_host_status(ctx: RequestContext, ver: Version, view: str) -> bool:
    if view in (views.UPDATE, views.REBUILD) and ver < views.ALL_ATTRS_IN_UPDATE:
        return False
    return ver >= v("2.16") and policy.allowed(ctx, "compute:servers:show:host_status")


async def server_body(request: Request, ctx: RequestContext, row: dict[str, Any], view: str,
                      parts: server_show.ShowParts | None = None) -> dict[str, Any]:
    """The full body of one server for `view` (show, update or rebuild); `parts`: what show read
    with the row in one statement (server_show), else read here."""
    ver = _common.version(request)
    needs_status = _needs_host_status(ctx, ver, view)
    svc = _common.compute_service(request)
    if parts is not None:  # a fault (ERROR or deleted servers only) is the one read left
        fault, _ = await svc.extras_for(row, with_host_status=False)
        host_status = parts.host_status
    else:
        fault, host_status = await svc.extras_for(row, with_host_status=needs_status)
    vc = _view_ctx(request, ctx, view)
    if ver >= v("2.71"):
        groups = parts.groups if parts is not None else None
        if groups is None:
            groups = await _common.server_group_service(request).groups_of_server(row["uuid"])
        row["_server_groups"] = groups
    if fault is not None:
        vc.faults[row["uuid"]] = fault
    if host_status is not None and row.get("host"):
        vc.host_status[row["host"]] = host_status
    if parts is not None:
        vc.volumes = {row["uuid"]: parts.volumes}
    else:
        vc.volumes = await VolumeAttachmentService(svc).of_servers([row["uuid"]])
    return views.server(row, vc)


async def show(request: Request) -> Response:
    ctx = await _common.caller(request)
    svc = _common.compute_service(request)
    ver = _common.version(request)
    # The row, its mappings, host_status and groups in one statement (a polled route).
    parts = await server_show.load(svc.db, svc.conf, ctx, request.path_params["server_id"],
                                   with_host_status=_needs_host_status(ctx, ver, views.SHOW),
                                   with_groups=ver >= v("2.71"))
    row = parts.row
    policy.authorize(ctx, "compute:servers:show")
    if svc.network is not None:  # a floating IP associated through the network API shows at once
        await networking.refresh_addresses(svc.db, svc.network, ctx, [row])
    return json_response({"server": await server_body(request, ctx, row, views.SHOW, parts)})


async def update(request: Request) -> Response:
    ctx = await _common.caller(request)
    svc = _common.compute_service(request)
    row = await svc.get(ctx, request.path_params["server_id"])
    policy.authorize(ctx, "compute:servers:update")
    data = await _common.body(request, schema.UPDATE)
    server = data["server"]
    values = _common.server_columns(server)
    if "OS-DCF:diskConfig" in server:
        values["system_metadata"] = dict(row["system_metadata"] or {}, auto_disk_config=server["OS-DCF:diskConfig"] == "AUTO")
    row = await svc.update(ctx, row, values)
    return json_response({"server": await server_body(request, ctx, row, views.UPDATE)})


async def delete(request: Request) -> Response:
    ctx = await _common.caller(request)
    svc = _common.compute_service(request)
    row = await svc.get(ctx, request.path_params["server_id"])
    policy.authorize(ctx, "compute:servers:delete")
    await softdelete.delete(svc, ctx, row)  # a soft delete when reclaim_instance_interval > 0
    return empty(204)


ROUTES = [
    Route("/v2.1/servers", index, methods=["GET"]),
    Route("/v2.1/servers", create, methods=["POST"]),
    Route("/v2.1/servers/detail", detail, methods=["GET"]),
    Route("/v2.1/servers/{server_id}", show, methods=["GET"]),
    Route("/v2.1/servers/{server_id}", update, methods=["PUT"]),
    Route("/v2.1/servers/{server_id}", delete, methods=["DELETE"]),
]

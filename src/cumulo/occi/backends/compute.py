"""compute <-> servers: the OCCI compute kind over the compute service layer, with the caller's
RequestContext and the same policy rules as Nova's API (compute:servers:*), so a server made here is
the same server in `openstack server list`, and the other way round.

Mapping (docs/occi.md restates it):
- occi.core.id = the server's UUID; title = its name; summary = its description;
  occi.compute.cores / memory (GiB, float) from its flavor; hostname = its hostname;
  architecture from its image's `architecture` property (x86_64 -> x64, i686 -> x86; absent: not
  shown); share from the flavor's `quota:cpu_shares` extra spec when it has one.
- occi.compute.state: active (ACTIVE), suspended (SUSPENDED, PAUSED), error (ERROR), inactive
  (everything else: BUILD, SHUTOFF, VERIFY_RESIZE, ...); state.message = "<vm_state>" or
  "<vm_state>/<task_state>" while a task runs, and the fault message for an error.
- mixins: the os_tpl of its image and the resource_tpl of its flavor. Contextualization is
  write-only (user data and keys are never rendered back).
- links: its networkinterfaces and storagelinks, as the link backends (NETWORK's, STORAGE's)
  render them, picked by occi.core.source.
- actions (only those the current state allows are advertised; any other is a 409):
  start (SHUTOFF -> start; SUSPENDED -> resume; PAUSED -> unpause), stop (every method: Nova's
  stop, which asks the guest and powers off after the shutdown timeout), restart (graceful|warm:
  soft reboot, cold: hard reboot; no method: soft, or hard in a state only a hard reboot leaves,
  e.g. SHUTOFF or ERROR), suspend (hibernate|suspend: suspend; runc
  suspends with the freezer or CRIU, QEMU with a VM stop), save (createImage; name default
  "<server name> snapshot"; the image becomes an os_tpl mixin once active).
- create: see `create`; update: see `update`.
"""

from __future__ import annotations

import asyncio
import importlib
import ipaddress
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cumulo import errors, policy
from cumulo.compute import instances as inst_db
from cumulo.compute import states as st
from cumulo.compute.api import server_actions as _nova_actions  # noqa: F401  (registers compute:servers:* rules)
from cumulo.compute.api import servers as _nova_servers  # noqa: F401  (registers compute:servers:* rules)
from cumulo.compute.models import instances
from cumulo.compute.service import bdm, server_create, softdelete
from cumulo.compute.service import transitions as tr
from cumulo.compute.service.boot import CreateRequest, sanitize_hostname
from cumulo.compute.service.listing import ListQuery
from cumulo.context import RequestContext
from cumulo.occi import categories as cat
from cumulo.occi.backends import contextualization
from cumulo.occi.backends.base import KindBackend
from cumulo.occi.backends.templates import (
    INSTANCE_TYPE,
    OS_SCHEME,
    RESOURCE_SCHEME,
    OsTemplates,
    ResourceTemplates,
    flavor_term,
    instance_type,
    memory_gib,
)
from cumulo.occi.model import ActionRequest, Entity, EntityRequest, Kind, split_location

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService
    from cumulo.occi.deps import OcciServices

START, STOP, RESTART, SUSPEND, SAVE = (a.id for a in (cat.START, cat.STOP, cat.RESTART, cat.SUSPEND, cat.SAVE))
_ARCH = {"x86_64": "x64", "amd64": "x64", "x64": "x64", "i386": "x86", "i686": "x86", "x86": "x86"}
_FIXED = ("occi.compute.cores", "occi.compute.memory", "occi.compute.architecture", "occi.compute.share")
_PAGE = 1000
RESIZE_CONFIRM_TIMEOUT = 900.0  # seconds an OCCI resize may take before it is left for the user to confirm


def occi_state(vm_state: str) -> str:
    if vm_state == st.ACTIVE:
        return "active"
    if vm_state in (st.SUSPENDED, st.PAUSED):
        return "suspended"
    if vm_state == st.ERROR:
        return "error"
    return "inactive"


def _allowed(ctx: RequestContext, row: dict[str, Any], key: str) -> bool:
    try:
        tr.check(ctx, row, tr.TRANSITIONS[key])
    except errors.CumuloError:
        return False
    return True


def allowed_actions(ctx: RequestContext, row: dict[str, Any]) -> list[str]:
    out = []
    if any(_allowed(ctx, row, k) for k in ("start", "resume", "unpause")):
        out.append(START)
    if _allowed(ctx, row, "stop"):
        out.append(STOP)
    if _allowed(ctx, row, "reboot_soft") or _allowed(ctx, row, "reboot_hard"):
        out.append(RESTART)
    if _allowed(ctx, row, "suspend"):
        out.append(SUSPEND)
    if _allowed(ctx, row, "createImage"):
        out.append(SAVE)
    return out


def _image_summary(row: dict[str, Any]) -> dict[str, Any]:
    return dict((row.get("request_spec") or {}).get("image") or {})


def _instance_type(image: dict[str, Any]) -> str:
    """As the os_tpl shows it, from the image summary a server keeps (properties nested)."""
    return instance_type({**(image.get("properties") or {}), "container_format": image.get("container_format")})


class ComputeBackend:
    """KindBackend for compute. `link_backends` (networkinterface, storagelink) give each compute
    its links; APP's deps sets them once every backend exists."""

    def __init__(self, kind: Kind, compute: ComputeService, os_tpl: OsTemplates, resource_tpl: ResourceTemplates,
                 link_backends: Sequence[KindBackend] = ()) -> None:
        self.kind = kind
        self.compute = compute
        self.os_tpl = os_tpl
        self.resource_tpl = resource_tpl
        self.link_backends = list(link_backends)
        self._tasks: set[asyncio.Task[None]] = set()

    # --- reading ---

    def entity(self, ctx: RequestContext, row: dict[str, Any], fault: dict[str, Any] | None = None,
               links: Sequence[Entity] = ()) -> Entity:
        uuid = str(row["uuid"])
        flavor = row.get("flavor") or {}
        image = _image_summary(row)
        message = row["vm_state"] if not row.get("task_state") else f"{row['vm_state']}/{row['task_state']}"
        if row["vm_state"] == st.ERROR and fault and fault.get("message"):
            message = f"{message}: {fault['message']}"
        attrs: dict[str, Any] = {
            "occi.core.id": uuid,
            "occi.core.title": row.get("display_name") or "",
            "occi.compute.cores": int(row.get("vcpus") or flavor.get("vcpus") or 0),
            "occi.compute.memory": memory_gib(row.get("memory_mb") or flavor.get("memory_mb")),
            "occi.compute.hostname": row.get("hostname") or "",
            "occi.compute.state": occi_state(row["vm_state"]),
            "occi.compute.state.message": message,
        }
        if row.get("display_description"):
            attrs["occi.core.summary"] = row["display_description"]
        props = image.get("properties") or {}
        arch = _ARCH.get(str(props.get("architecture") or props.get("hw_architecture") or "").lower())
        if arch:
            attrs["occi.compute.architecture"] = arch
        shares = (flavor.get("extra_specs") or {}).get("quota:cpu_shares")
        if shares is not None and str(shares).isdigit():
            attrs["occi.compute.share"] = int(shares)
        mixins = []
        if row.get("image_ref"):
            mixins.append(OS_SCHEME + str(row["image_ref"]))
            attrs[INSTANCE_TYPE] = _instance_type(image)
        if flavor.get("flavorid") is not None:
            mixins.append(RESOURCE_SCHEME + flavor_term(str(flavor["flavorid"])))
        return Entity(
            kind=self.kind.id, id=uuid, location=f"/compute/{uuid}", mixins=mixins, attributes=attrs,
            actions=allowed_actions(ctx, row), links=list(links),
        )

    async def _links(self, ctx: RequestContext, uuids: set[str]) -> dict[str, list[Entity]]:
        out: dict[str, list[Entity]] = {}

        async def read(backend: KindBackend) -> list[Entity]:
            # links_of(ctx, server uuids): a link backend's own cheaper read of some servers' links
            links_of = getattr(backend, "links_of", None)
            found: list[Entity] = await (links_of(ctx, sorted(uuids)) if links_of is not None else backend.list(ctx))
            return found

        for links in await asyncio.gather(*(read(b) for b in self.link_backends)):
            for link in links:
                source = str(link.attributes.get("occi.core.source") or "")
                try:
                    coll, ident = split_location(source)
                except ValueError:
                    continue
                if coll == "compute" and ident in uuids:
                    out.setdefault(ident, []).append(link)
        return out

    async def _faults(self, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        failed = [r["uuid"] for r in rows if r["vm_state"] == st.ERROR]
        if not failed:
            return {}
        async with self.compute.db.read() as conn:
            return await inst_db.latest_faults(conn, failed)

    async def list(self, ctx: RequestContext) -> list[Entity]:
        policy.authorize(ctx, "compute:servers:detail")
        rows: list[dict[str, Any]] = []
        marker: str | None = None
        while True:  # the caller's project only, even for an admin (Nova's default list)
            q = ListQuery(project_id=ctx.project_id or "", limit=_PAGE, marker=marker, sort=[("created_at", "asc")])
            page, _faults, _status = await self.compute.list_servers(q, with_faults=False, with_host_status=False)
            rows += [r for r in page if not _gone(r)]
            if len(page) < _PAGE:
                break
            marker = page[-1]["uuid"]
        await self._with_request_specs(rows)
        faults = await self._faults(rows)
        links = await self._links(ctx, {r["uuid"] for r in rows}) if rows else {}
        return [self.entity(ctx, r, faults.get(r["uuid"]), links.get(r["uuid"], ())) for r in rows]

    async def _with_request_specs(self, rows: Sequence[dict[str, Any]]) -> None:
        """The image facts (request_spec) a listing leaves out, for instance_type and architecture;
        rows of the caller's project only (they come from its listing)."""
        uuids = [r["uuid"] for r in rows]
        specs: dict[str, Any] = {}
        async with self.compute.db.read() as conn:
            for i in range(0, len(uuids), 500):
                q = sa.select(instances.c.uuid, instances.c.request_spec).where(instances.c.uuid.in_(uuids[i:i + 500]))
                specs.update({u: spec for u, spec in await conn.execute(q)})
        for r in rows:
            r["request_spec"] = specs.get(r["uuid"]) or {}

    async def _row(self, ctx: RequestContext, entity_id: str) -> dict[str, Any]:
        row = await self.compute.get(ctx, entity_id)
        if row["project_id"] != ctx.project_id or _gone(row):  # an admin, too, sees only their project's here
            raise errors.NotFound(f"compute {entity_id} not found")
        return row

    async def get(self, ctx: RequestContext, entity_id: str) -> Entity:
        # The row and the links are read side by side (the links are the caller's project's only:
        # another project's id finds none, and the row's NotFound wins).
        links_task = asyncio.ensure_future(self._links(ctx, {entity_id}))
        try:
            try:
                row = await self._row(ctx, entity_id)
            except errors.NotFound:
                raise errors.NotFound(f"compute {entity_id} not found") from None
            policy.authorize(ctx, "compute:servers:show")
            links = await links_task
        finally:
            if not links_task.done():
                links_task.cancel()
                await asyncio.gather(links_task, return_exceptions=True)
        faults = await self._faults([row])
        return self.entity(ctx, row, faults.get(row["uuid"]), links.get(row["uuid"], ()))

    # --- create ---

    async def _flavor_by_size(self, ctx: RequestContext, image: dict[str, Any] | None, cores: Any,
                              memory: Any) -> dict[str, Any]:
        """The smallest flavor (memory, then cores, then disk) with exactly `cores` vCPUs and
        `memory` GiB (None: any) that `image` fits (None: no image check); 400 naming what no
        flavor has."""
        fitting = [
            f for f in await self.resource_tpl.flavors(ctx)
            if (image is None or _fits(f, image)) and (cores is None or int(f["vcpus"]) == int(cores))
            and (memory is None or _same_memory(f["memory_mb"], memory))
        ]
        if fitting:
            return min(fitting, key=lambda f: (int(f["memory_mb"]), int(f["vcpus"]), int(f["root_gb"]), str(f["flavorid"])))
        asked = [f"{n}={v}" for n, v in (("occi.compute.cores", cores), ("occi.compute.memory", memory)) if v is not None]
        if asked:
            raise errors.Invalid(f"no resource_tpl has {' and '.join(asked)}"
                                 + (f" and fits the os_tpl {OS_SCHEME}{image['id']}" if image else ""))
        assert image is not None
        raise errors.Invalid(f"no resource_tpl fits the os_tpl {OS_SCHEME}{image['id']}: name one ({RESOURCE_SCHEME}<id>)")

    async def create(self, ctx: RequestContext, req: EntityRequest) -> Entity:
        """os_tpl (required) -> image; resource_tpl -> flavor (default: the smallest that fits,
        with the occi.compute.cores / occi.compute.memory asked for if any);
        title -> name (default "occi-<8 hex>"); summary -> description; hostname -> hostname;
        contextualization (contextualization.py); inline links: a networkinterface to
        /network/<id> -> one of the server's networks (occi.networkinterface.address -> its fixed
        IP), a storagelink to /storage/<id> -> the volume attached at boot as a data disk (a
        block device mapping, occi.storagelink.deviceid -> its device name). Without a
        networkinterface the server gets the network Nova picks (the project's own network,
        else the shared one)."""
        policy.authorize(ctx, "compute:servers:create")
        attrs = req.attributes
        os_id = _one(req.mixins, OS_SCHEME, "os_tpl")
        if os_id is None:
            raise errors.Invalid(f"an os_tpl mixin ({OS_SCHEME}<image id>) is required to create a compute")
        image = await self.os_tpl.image_for(ctx, os_id)
        res_id = _one(req.mixins, RESOURCE_SCHEME, "resource_tpl")
        if res_id:
            flavor = await self.resource_tpl.flavor_for(ctx, res_id)
            _check_template(flavor, attrs)
        else:  # the smallest flavor the image fits, with the cores and memory asked for if any
            flavor = await self._flavor_by_size(ctx, image, attrs.get(_FIXED[0]), attrs.get(_FIXED[1]))
        for name in _FIXED[2:]:
            if name in attrs:
                raise errors.Invalid(f"{name} cannot be chosen: it comes from the os_tpl and resource_tpl mixins")
        title = attrs.get("occi.core.title")
        name = str(title).strip() if title not in (None, "") else f"occi-{secrets.token_hex(4)}"
        if not name or len(name) > 255:
            raise errors.Invalid("occi.core.title must be 1 to 255 characters")
        hostname = None
        if attrs.get("occi.compute.hostname") not in (None, ""):
            hostname = sanitize_hostname(str(attrs["occi.compute.hostname"]), "")
            if not hostname:
                raise errors.Invalid("occi.compute.hostname is not a usable hostname")
        ctxz = contextualization.parse(attrs)
        networks, volumes = _inline_links(req)
        if volumes:
            policy.authorize(ctx, "compute:servers:create:attach_volume")
        plan = bdm.parse({"imageRef": image["id"], "block_device_mapping_v2": volumes})
        creq = CreateRequest(
            name=name, flavor_ref=str(flavor["flavorid"]), image_ref=plan.image_ref or "", block_devices=plan,
            description=attrs.get("occi.core.summary"), key_name=ctxz.key_name, key_data=ctxz.key_data,
            user_data=ctxz.user_data, requested_networks=networks or None, hostname=hostname,
        )
        rows, _resv = await server_create.create_servers(self.compute, ctx, creq)
        return self.entity(ctx, rows[0])  # as written (BUILD); its links show once its ports and disks are

    # --- update / delete ---

    async def update(self, ctx: RequestContext, entity_id: str, req: EntityRequest, *, replace: bool) -> Entity:
        """title -> rename; summary -> description; hostname -> hostname (as Nova 2.90); a new
        resource_tpl -> resize, confirmed automatically once the server reaches VERIFY_RESIZE;
        new cores and/or memory without one -> a resize to the smallest flavor that has them (a
        400 naming them when none has). Architecture and share come from the templates: another
        value is a 400 naming it, and so is another os_tpl (a compute keeps its image). PUT: an
        absent summary is cleared; title, hostname and the templates stay."""
        row = await self._row(ctx, entity_id)
        policy.authorize(ctx, "compute:servers:update")
        attrs = req.attributes
        current = self.entity(ctx, row).attributes
        for name in _FIXED[2:]:
            if name in attrs and attrs[name] != current.get(name):
                raise errors.Invalid(f"{name} cannot be changed: it comes from the os_tpl and resource_tpl mixins")
        os_id = _one(req.mixins, OS_SCHEME, "os_tpl")
        if os_id is not None and os_id != OS_SCHEME + str(row.get("image_ref") or ""):
            raise errors.Invalid(f"the os_tpl of a compute cannot change ({os_id}): create a new compute")
        values: dict[str, Any] = {}
        if "occi.core.title" in attrs:
            title = str(attrs["occi.core.title"] or "").strip()
            if not title or len(title) > 255:
                raise errors.Invalid("occi.core.title must be 1 to 255 characters")
            values["display_name"] = title
        if "occi.core.summary" in attrs or replace:
            values["display_description"] = attrs.get("occi.core.summary") or None
        if attrs.get("occi.compute.hostname") not in (None, ""):
            hostname = sanitize_hostname(str(attrs["occi.compute.hostname"]), "")
            if not hostname:
                raise errors.Invalid("occi.compute.hostname is not a usable hostname")
            values["hostname"] = hostname
        res_id = _one(req.mixins, RESOURCE_SCHEME, "resource_tpl")
        flavor = None
        if res_id is not None and res_id != RESOURCE_SCHEME + flavor_term(str((row.get("flavor") or {}).get("flavorid"))):
            flavor = await self.resource_tpl.flavor_for(ctx, res_id)
            _check_template(flavor, attrs)
        elif (_FIXED[0] in attrs and attrs[_FIXED[0]] != current[_FIXED[0]]) or (
                _FIXED[1] in attrs and not _same_memory(row.get("memory_mb") or 0, attrs[_FIXED[1]])):
            # new cores or memory: a resize to the smallest flavor that has them (the rest as now)
            flavor = await self._flavor_by_size(ctx, None, attrs.get(_FIXED[0], current[_FIXED[0]]),
                                                attrs.get(_FIXED[1], current[_FIXED[1]]))
        if flavor is not None:  # first: a resize refused (policy, state, quota) leaves the rest unchanged
            policy.authorize(ctx, "compute:servers:resize")
            await self.compute.resize(ctx, row, str(flavor["flavorid"]), None)
            self._track(self._confirm_resize(ctx, row["uuid"]))
        if values:
            await self.compute.update(ctx, row, values)
        return await self.get(ctx, entity_id)

    def _track(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _confirm_resize(self, ctx: RequestContext, uuid: str) -> None:
        """OCCI has no resize confirmation: confirm once the server is in VERIFY_RESIZE (polls the
        row; gives up when the resize fails or is reverted, or after RESIZE_CONFIRM_TIMEOUT)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESIZE_CONFIRM_TIMEOUT
        while loop.time() < deadline:
            await asyncio.sleep(0.5)
            try:
                row = await self.compute.get(ctx, uuid)
            except errors.NotFound:
                return
            if row["vm_state"] == st.RESIZED and row["task_state"] is None:
                try:
                    await self.compute.run_action(ctx, row, "confirmResize")
                except errors.CumuloError:
                    pass  # confirmed or reverted meanwhile by someone else
                return
            if row["task_state"] is None and row["vm_state"] != st.RESIZED:
                return  # the resize failed (or was never started)

    async def close(self) -> None:
        """Cancel the pending resize confirmations (the cloud is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def delete(self, ctx: RequestContext, entity_id: str) -> None:
        row = await self._row(ctx, entity_id)
        policy.authorize(ctx, "compute:servers:delete")
        await softdelete.delete(self.compute, ctx, row)

    # --- actions ---

    async def act(self, ctx: RequestContext, entity_id: str, action: ActionRequest) -> None:
        term = action.action.rsplit("#", 1)[-1]
        method = str(action.attributes.get("method") or "").lower()
        row = await self._row(ctx, entity_id)
        svc = self.compute
        if term == "start":
            key = {st.SUSPENDED: "resume", st.PAUSED: "unpause"}.get(row["vm_state"], "start")
            policy.authorize(ctx, f"compute:servers:{key}")
            await svc.run_action(ctx, row, key)
        elif term == "stop":
            _method(method, ("graceful", "acpioff", "poweroff"), "stop")
            policy.authorize(ctx, "compute:servers:stop")
            await svc.run_action(ctx, row, "stop")
        elif term == "restart":
            _method(method, ("graceful", "warm", "cold"), "restart")
            policy.authorize(ctx, "compute:servers:reboot")
            # cold: hard; graceful/warm: soft; no method: soft, or hard where only a hard reboot
            # may start (SHUTOFF, ERROR, ...: Nova's recovery reboot), as advertised
            hard = method == "cold" or (not method and not _allowed(ctx, row, "reboot_soft"))
            await svc.run_action(ctx, row, "reboot_hard" if hard else "reboot_soft", reboot_type="HARD" if hard else "SOFT")
        elif term == "suspend":
            _method(method, ("hibernate", "suspend"), "suspend")
            policy.authorize(ctx, "compute:servers:suspend")
            await svc.run_action(ctx, row, "suspend")
        elif term == "save":
            _method(method, ("hot", "deferred"), "save")
            policy.authorize(ctx, "compute:servers:create_image")
            name = str(action.attributes.get("name") or "").strip() or f"{row.get('display_name') or entity_id} snapshot"
            await svc.snapshot(ctx, row, name[:255], {})
        else:
            raise errors.Invalid(f"unknown compute action {action.action}")


def make(svc: OcciServices) -> ComputeBackend:
    """The compute backend, with the networkinterface and storagelink backends (NETWORK's and
    STORAGE's modules, when present) as the source of each compute's links."""
    backend = ComputeBackend(cat.COMPUTE, svc.compute, OsTemplates(svc.images), ResourceTemplates(svc.db))
    for name in ("networkinterface", "storagelink"):
        try:
            module = importlib.import_module(f"cumulo.occi.backends.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"cumulo.occi.backends.{name}":
                raise
            continue
        backend.link_backends.append(module.make(svc))
    return backend


def _method(method: str, allowed: tuple[str, ...], action: str) -> None:
    if method and method not in allowed:
        raise errors.Invalid(f"method {method!r} of {action} is not one of {', '.join(allowed)}")


def _same_memory(memory_mb: Any, gib: Any) -> bool:
    """Whether `gib` (as a client sends back the rendered, rounded GiB) is this many MiB."""
    return abs(int(memory_mb) / 1024 - float(gib)) <= 0.001


def _fits(flavor: dict[str, Any], image: dict[str, Any]) -> bool:
    """Whether the image boots with this flavor (its min_ram, min_disk and size; a 0 GiB root
    disk takes any image), as Nova's check_image_fits."""
    if int(flavor["memory_mb"]) < int(image.get("min_ram") or 0):
        return False
    root = int(flavor["root_gb"] or 0)
    return not root or (root >= int(image.get("min_disk") or 0) and root << 30 >= int(image.get("size") or 0))


def _check_template(flavor: dict[str, Any], attrs: dict[str, Any]) -> None:
    """cores/memory sent with a resource_tpl must be the template's (400 naming the attribute)."""
    cores, memory = attrs.get(_FIXED[0]), attrs.get(_FIXED[1])
    if cores is not None and int(cores) != int(flavor["vcpus"]):
        raise errors.Invalid(f"occi.compute.cores={cores} is not the resource_tpl's ({flavor['vcpus']} for {flavor['name']})")
    if memory is not None and not _same_memory(flavor["memory_mb"], memory):
        raise errors.Invalid(f"occi.compute.memory={memory} is not the resource_tpl's "
                             f"({memory_gib(flavor['memory_mb'])} for {flavor['name']})")


def _one(mixins: list[str], scheme: str, what: str) -> str | None:
    found = [m for m in mixins if m.startswith(scheme)]
    if len(found) > 1:
        raise errors.Invalid(f"more than one {what} mixin: {', '.join(found)}")
    return found[0] if found else None


def _gone(row: dict[str, Any]) -> bool:
    """A server whose DELETE was accepted (being deleted, soft-deleted) is no entity any more: GFD.223
    §10.4's DELETE deletes it, so GET is a 404 at once while the host finishes in the background."""
    return row.get("task_state") in (st.DELETING, st.SOFT_DELETING) or row.get("vm_state") in (
        st.DELETED, st.SOFT_DELETED)


def _inline_links(req: EntityRequest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    networks: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    for link in req.links:
        try:
            coll, target = split_location(link.target)
        except ValueError:
            raise errors.Invalid(f"link target {link.target!r} is not a /network/<id> or /storage/<id> location") from None
        kind = (link.kind or "").rsplit("#", 1)[-1]
        if coll == "network" and kind in ("", "networkinterface"):
            net: dict[str, Any] = {"uuid": target}
            address = link.attributes.get("occi.networkinterface.address")
            if address:
                try:  # an address may come with its prefix ("10.0.0.5/24"); Nova's fixed_ip has none
                    net["fixed_ip"] = str(ipaddress.ip_interface(str(address)).ip)
                except ValueError:
                    raise errors.Invalid(f"occi.networkinterface.address {str(address)[:64]!r} is not an IP address") from None
            networks.append(net)
        elif coll == "storage" and kind in ("", "storagelink"):
            mapping: dict[str, Any] = {"source_type": "volume", "destination_type": "volume", "uuid": target,
                                       "boot_index": -1, "delete_on_termination": False}
            if link.attributes.get("occi.storagelink.deviceid"):
                mapping["device_name"] = str(link.attributes["occi.storagelink.deviceid"])
            volumes.append(mapping)
        else:
            raise errors.Invalid(f"an inline link of a compute is a networkinterface to /network/<id> or a "
                                 f"storagelink to /storage/<id>, not {link.kind or 'a link'} to {link.target}")
    return networks, volumes

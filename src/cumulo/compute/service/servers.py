"""The API side of compute: validates against the domain (images, flavors, keys, quotas), changes
instance rows with compare-and-swap, records instance actions and casts to the workers.

Nothing slow runs here: every method returns as soon as the DB says yes and the cast is queued.
The create path is server_create.py; other facets (softdelete, admin_actions, interfaces, volume_attachments,
...) take the ComputeService they work on.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection

from cumulo import errors, policy
from cumulo.bus.base import Bus
from cumulo.compute import actions as act
from cumulo.compute import instances as inst_db
from cumulo.compute import migration_records, netports
from cumulo.compute import states as st
from cumulo.compute import volumes as cvolumes
from cumulo.compute.models import instance_actions, instances
from cumulo.compute.rpc import ComputeAPI, ConductorAPI
from cumulo.compute.service import boot_volumes, bus_undo, local_delete, passwords, samples
from cumulo.compute.service import transitions as tr
from cumulo.compute.service.boot import check_image_fits, flavor_snapshot, image_summary
from cumulo.compute.service.listing import ListQuery, install_sqlite_functions, list_instances
from cumulo.compute.service.quotas import QuotaEngine
from cumulo.conf import Settings
from cumulo.context import RequestContext
from cumulo.db import Database, utcnow
from cumulo.hosts.models import services

if TYPE_CHECKING:
    from cumulo.image.service import ImageService
    from cumulo.placement.service import Placement

class ServiceUnavailable(errors.CumuloError):
    code = 503


class ComputeService:
    def __init__(self, db: Database, bus: Bus, conf: Settings, images: ImageService, placement: Placement,
                 network: netports.NetworkPorts | None = None) -> None:
        self.db, self.bus, self.conf = db, bus, conf
        self.network = network  # None: no network service (servers get no NICs)
        self.volumes: cvolumes.VolumeClient | None = None  # set by the runtime; None: no volumes
        self.images = images
        self.placement = placement
        self.quotas = QuotaEngine(conf)
        self.conductor = ConductorAPI(bus)
        self.agents = ComputeAPI(bus)
        if db.is_sqlite:
            event.listen(db.engine.sync_engine, "connect", install_sqlite_functions)

    async def bootstrap(self) -> None:
        from cumulo.compute.service import flavors  # written alongside; imported late on purpose

        await flavors.ensure_default_flavors(self.db)

    # --- lookups ---

    async def get(self, ctx: RequestContext, uuid: str, *, include_deleted: bool = False) -> dict[str, Any]:
        """The instance if the caller may see it (admins see every project), else NotFound."""
        async with self.db.read() as conn:
            return await self._get(conn, ctx, uuid, include_deleted=include_deleted)

    @staticmethod
    async def _get(conn: AsyncConnection, ctx: RequestContext, uuid: str, *, include_deleted: bool = False) -> dict[str, Any]:
        row = await inst_db.get(conn, uuid, include_deleted=include_deleted)
        if row is None or (not ctx.is_admin and row["project_id"] != ctx.project_id):
            raise errors.NotFound(f"Instance {uuid} could not be found.")
        return row

    async def list_servers(
        self, q: ListQuery, *, with_faults: bool, with_host_status: bool
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[str, str]]:
        async with self.db.read() as conn:
            rows = await list_instances(conn, q)
            faults: dict[str, dict[str, Any]] = {}
            if with_faults:
                failed = [r["uuid"] for r in rows if r["vm_state"] == st.ERROR or r["deleted"]]
                faults = await inst_db.latest_faults(conn, failed)
            statuses: dict[str, str] = {}
            if with_host_status:
                statuses = await self._host_statuses(conn, {r["host"] for r in rows if r.get("host")})
        return rows, faults, statuses

    async def extras_for(self, inst: dict[str, Any], *, with_host_status: bool) -> tuple[dict[str, Any] | None, str | None]:
        """(fault, host_status) for one server view."""
        if not (with_host_status or inst["vm_state"] == st.ERROR or inst["deleted"]):
            return None, None
        async with self.db.read() as conn:
            fault = None
            if inst["vm_state"] == st.ERROR or inst["deleted"]:
                fault = (await inst_db.latest_faults(conn, [inst["uuid"]])).get(inst["uuid"])
            host_status = None
            if with_host_status:
                host = inst.get("host")
                host_status = (await self._host_statuses(conn, {host})).get(host, "UNKNOWN") if host else ""
        return fault, host_status

    async def hosts_of(self, uuids: list[str]) -> dict[str, str | None]:
        """The host of each live server among `uuids` (None while unplaced); the rest are left out."""
        async with self.db.read() as conn:
            q = sa.select(instances.c.uuid, instances.c.host).where(instances.c.uuid.in_(uuids), instances.c.deleted.is_(False))
            return {u: h for u, h in await conn.execute(q)}

    async def clear_password(self, inst: dict[str, Any]) -> None:
        """Empty the server's stored encrypted admin password (os-server-password DELETE)."""
        await passwords.clear(self.db, inst["uuid"])

    async def _host_statuses(self, conn: AsyncConnection, hosts: set[str]) -> dict[str, str]:
        """Nova's host_status: UP, DOWN, MAINTENANCE (disabled but up), UNKNOWN (no service)."""
        from cumulo.compute.service import hostinfo
        from cumulo.hosts import servicegroup

        if not hosts:
            return {}
        rows = await conn.execute(sa.select(services).where(services.c.host.in_(hosts)))
        now = utcnow()
        out: dict[str, str] = {}
        for svc in rows.mappings():
            if not hostinfo.is_compute(svc["binary"]):
                continue
            if not servicegroup.is_up(dict(svc), self.conf, now):
                out[svc["host"]] = "DOWN"
            else:
                out[svc["host"]] = "MAINTENANCE" if svc["disabled"] else "UP"
        return out

    # --- what a request names: image, flavor, key pair (server_create, rebuild, resize) ---

    async def get_image(self, ctx: RequestContext, image_ref: str, missing: str) -> dict[str, Any]:
        try:
            return await self.images.get(ctx, image_ref)
        except errors.NotFound:
            raise errors.Invalid(missing) from None

    async def flavor_for(self, conn: AsyncConnection, ctx: RequestContext, flavor_ref: str) -> dict[str, Any]:
        from cumulo.compute.service import flavors

        try:
            return await flavors.get_flavor_for(conn, ctx, flavor_ref)
        except errors.NotFound:
            raise errors.Invalid(f"Flavor {flavor_ref} could not be found.") from None

    async def keypair_for(self, conn: AsyncConnection, ctx: RequestContext, key_name: str) -> dict[str, Any]:
        from cumulo.compute.service import keypairs

        try:
            return await keypairs.get_keypair(conn, ctx.user_id or "", key_name)
        except errors.NotFound:
            raise errors.Invalid("Invalid key_name provided.") from None

    async def _check_metadata_quota(self, conn: AsyncConnection, project: str, items: int) -> None:
        if not items:
            return
        limit = (await self.quotas.limits(conn, project))["metadata_items"]
        if 0 <= limit < items:
            raise errors.OverQuota(f"Maximum number of metadata items exceeds {limit}")

    # --- update / delete ---

    async def update(self, ctx: RequestContext, inst: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        if values:
            async with self.db.write() as conn:
                if not await inst_db.cas_update(conn, inst["uuid"], values):
                    raise errors.NotFound(f"Instance {inst['uuid']} could not be found.")
        return await self.get(ctx, inst["uuid"])

    async def delete(self, ctx: RequestContext, inst: dict[str, Any]) -> None:
        tr.check_lock(ctx, inst)
        uuid = inst["uuid"]
        now = utcnow()
        async with self.db.write() as conn:
            # Never scheduled: nothing exists on a host, so the row goes at once. `host IS NULL`
            # in the WHERE makes this lose cleanly against a conductor placing it right now.
            gone = await conn.execute(
                sa.update(instances)
                .where(instances.c.uuid == uuid, instances.c.deleted.is_(False), instances.c.host.is_(None))
                .values(
                    deleted=True, deleted_at=now, terminated_at=now, vm_state=st.DELETED, task_state=None,
                    progress=0, updated_at=now,
                )
            )
            if gone.rowcount:
                await act.record_action(conn, ctx, uuid, act.DELETE)
        if gone.rowcount:
            if self.network is not None and netports.port_ids_of(inst):
                await self.network.release_ports_of_device(uuid, keep=netports.user_ports_of(inst))
            await cvolumes.release_unplaced(self.db, self.volumes, inst)
            return
        if await local_delete.host_is_down(self, inst) and await local_delete.delete_locally(self, ctx, inst, inst["host"]):
            return  # its host is down: Nova's local delete
        async with self.db.write() as conn:
            started = await conn.execute(
                sa.update(instances)
                .where(
                    instances.c.uuid == uuid,
                    instances.c.deleted.is_(False),
                    sa.or_(instances.c.task_state.is_(None), instances.c.task_state != st.DELETING),
                )
                .values(task_state=st.DELETING, progress=0, updated_at=now)
            )
            if not started.rowcount:
                return  # already being deleted (or gone): delete is idempotent
            await act.record_action(conn, ctx, uuid, act.DELETE)
            host = (await conn.execute(sa.select(instances.c.host).where(instances.c.uuid == uuid))).scalar_one()
        deleting = {**inst, "task_state": st.DELETING, "progress": 0}
        await bus_undo.cast_or_undo(self.agents.terminate_instance(host, uuid, request_id=ctx.request_id),
                                    lambda: bus_undo.revert_begin(self.db, ctx, inst, deleting))

    # --- state-changing actions ---

    async def begin(
        self,
        ctx: RequestContext,
        inst: dict[str, Any],
        key: str,
        values: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Check and CAS the transition `key`, record the action; returns the row as it now is."""
        t = tr.TRANSITIONS[key]
        tr.check(ctx, inst, t)
        changes = {"task_state": t.new_task_state, **(values or {})}
        if key == "stop":
            changes["progress"] = 0
        async with self.db.write() as conn:
            ok = await inst_db.cas_update(
                conn,
                inst["uuid"],
                changes,
                expected_task_state=list(t.task_states) if t.task_states is not None else inst["task_state"],
                expected_vm_state=list(t.vm_states) if t.vm_states is not None else inst["vm_state"],
            )
            if not ok:
                # Re-check against what won the race, for Nova's precise 409 wording.
                current = await inst_db.get(conn, inst["uuid"])
                if current is None:
                    raise errors.NotFound(f"Instance {inst['uuid']} could not be found.")
                tr.check(ctx, current, t)
                raise errors.Conflict(f"Conflict updating instance {inst['uuid']}.")
            await act.record_action(conn, ctx, inst["uuid"], t.action)
            row = await inst_db.get(conn, inst["uuid"])
        assert row is not None
        return row

    async def run_action(self, ctx: RequestContext, inst: dict[str, Any], key: str, **cast_args: Any) -> None:
        """A plain action: transition, then cast its agent method to the instance's host."""
        row = await self.begin(ctx, inst, key)
        cast = tr.TRANSITIONS[key].agent
        assert cast is not None
        await bus_undo.cast_or_undo(cast(self.agents, row["host"], row["uuid"], request_id=ctx.request_id, **cast_args),
                                    lambda: bus_undo.revert_begin(self.db, ctx, inst, row))

    async def rebuild(
        self, ctx: RequestContext, inst: dict[str, Any], image_ref: str, values: dict[str, Any], key_name: Any
    ) -> dict[str, Any]:
        tr.check(ctx, inst, tr.TRANSITIONS["rebuild"])
        boot_volumes.check_rebuild(inst, image_ref)
        image = await self.get_image(ctx, image_ref, "Cannot find image for rebuild")
        check_image_fits(image, inst["flavor"])
        changes = dict(values, image_ref=image["id"], progress=0)
        if key_name is not None:
            if key_name:
                async with self.db.read() as conn:
                    kp = await self.keypair_for(conn, ctx, key_name)
                changes.update(key_name=key_name, key_data=kp["public_key"])
            else:
                changes.update(key_name=None, key_data=None)
        spec = dict(inst.get("request_spec") or {}, image=image_summary(image))
        changes["request_spec"] = spec
        if "metadata" in changes:
            async with self.db.read() as conn:
                await self._check_metadata_quota(conn, inst["project_id"], len(changes["metadata"]))
        row = await self.begin(ctx, inst, "rebuild", changes)
        await bus_undo.cast_or_undo(
            self.agents.rebuild_instance(row["host"], row["uuid"], image_ref=image["id"], request_id=ctx.request_id),
            lambda: bus_undo.revert_begin(self.db, ctx, inst, row))
        return row

    async def resize(self, ctx: RequestContext, inst: dict[str, Any], flavor_ref: str, auto_disk: bool | None) -> None:
        tr.check(ctx, inst, tr.TRANSITIONS["resize"])
        async with self.db.read() as conn:
            new = await self.flavor_for(conn, ctx, flavor_ref)
        new_snap = flavor_snapshot(new)
        if new_snap["flavorid"] == str((inst["flavor"] or {}).get("flavorid")):
            raise errors.Invalid("When resizing, instances must change flavor!")
        image = (inst.get("request_spec") or {}).get("image") or {}
        if new_snap["memory_mb"] < int(image.get("min_ram") or 0):
            raise errors.Invalid("Flavor's memory is too small for requested image.")
        if new_snap["root_gb"] and new_snap["root_gb"] < int(image.get("min_disk") or 0):
            raise errors.Invalid("Flavor's disk is too small for requested image.")
        values: dict[str, Any] = {"new_flavor": new_snap}
        if auto_disk is not None:
            values["system_metadata"] = dict(inst["system_metadata"] or {}, auto_disk_config=auto_disk)
        async with self.db.read() as conn:
            await self._check_upsize_quota(conn, inst, new_snap)
        row = await self.begin(ctx, inst, "resize", values)
        async with self.db.write() as conn:
            migration = await migration_records.start_resize(conn, ctx, inst, new_snap)

        async def undo() -> None:
            await bus_undo.forget_migration(self.db, migration)
            await bus_undo.revert_begin(self.db, ctx, inst, row)

        await bus_undo.cast_or_undo(self.conductor.resize_instance(inst["uuid"], new_snap, ctx.request_id), undo)

    async def _check_upsize_quota(self, conn: AsyncConnection, inst: dict[str, Any], new: dict[str, Any]) -> None:
        deltas = {"cores": new["vcpus"] - int(inst["vcpus"]), "ram": new["memory_mb"] - int(inst["memory_mb"])}
        if all(d <= 0 for d in deltas.values()):
            return
        # The project's quota, and the owner's own limits if they have any, as Nova's upsize check.
        await self.quotas.check_instance_delta(conn, inst["project_id"], inst.get("user_id"), deltas)

    async def snapshot(self, ctx: RequestContext, inst: dict[str, Any], name: str, metadata: dict[str, str]) -> str:
        t = tr.TRANSITIONS["createImage"]
        tr.check(ctx, inst, t)
        if boot_volumes.is_volume_backed(inst):  # volume snapshots and an image that maps them
            return await boot_volumes.snapshot_volume_backed(self.db, self.volumes, self.images, ctx, inst, name, metadata)
        base = (inst.get("request_spec") or {}).get("image") or {}
        properties: dict[str, Any] = {
            **{k: val for k, val in (base.get("properties") or {}).items() if isinstance(val, str | int | float | bool)},
            "instance_uuid": inst["uuid"],
            "user_id": ctx.user_id,
            "image_type": "snapshot",
            "base_image_ref": inst.get("image_ref") or "",
            **metadata,
        }
        image = await self.images.create_snapshot_record(
            ctx, name, properties, base.get("disk_format") or "raw", base.get("container_format") or "bare"
        )
        try:
            # The image is named on the row from the start (agent/snapshot.py's SNAPSHOT_IMAGE_KEY), so
            # a snapshot whose cast is lost, once settled (conductor/stuck.py), fails its image too.
            row = await self.begin(ctx, inst, "createImage", {"system_metadata": {
                **(inst["system_metadata"] or {}), "snapshot_image_id": image["id"]}})
        except errors.CumuloError:
            await self.images.mark_failed(image["id"])
            raise
        async def undo() -> None:
            await bus_undo.revert_begin(self.db, ctx, inst, row)
            await self.images.mark_failed(image["id"])

        await bus_undo.cast_or_undo(
            self.agents.snapshot_instance(row["host"], row["uuid"], image_id=image["id"], request_id=ctx.request_id),
            undo)
        return str(image["id"])

    async def console_output(self, ctx: RequestContext, inst: dict[str, Any], length: int | None) -> str:
        """The last `length` lines of the server's console log (None: all), from its agent."""
        host = _ready_host(inst)
        try:
            return await self.agents.get_console_output(
                host, inst["uuid"], length=length, request_id=ctx.request_id, timeout=_AGENT_CALL_TIMEOUT
            )
        except TimeoutError:
            raise ServiceUnavailable(f"Compute host {host} did not answer in time") from None

    async def diagnostics(self, ctx: RequestContext, inst: dict[str, Any]) -> dict[str, Any]:
        """The server's diagnostics as its driver reports them (Nova's 2.48 shape), from its agent."""
        host = _ready_host(inst)
        try:
            return await self.agents.get_diagnostics(
                host, inst["uuid"], request_id=ctx.request_id, timeout=_AGENT_CALL_TIMEOUT
            )
        except TimeoutError:
            raise ServiceUnavailable(f"Compute host {host} did not answer in time") from None

    async def exec_in_server(
        self, ctx: RequestContext, inst: dict[str, Any], argv: list[str], *, env: dict[str, str] | None = None,
        stdin: bytes = b"", timeout: float = 300.0, output_limit: int = 65536,
    ) -> dict[str, Any]:
        """Run argv inside the server and wait (the PaaS manager's recipes; no Nova route exposes
        it): rule compute:servers:exec (a member) on a server of the caller's project, or an admin's.
        The answer is the driver's ExecResult as JSON (exit_code, signal, stdout, stderr, the
        *_truncated flags, timed_out, seconds); a non-zero exit is an answer, not an error."""
        policy.authorize(ctx, "compute:servers:exec")
        if inst["project_id"] != ctx.project_id and not ctx.is_admin:
            raise errors.NotFound(f"Instance {inst['uuid']} could not be found.")
        if len(stdin) > EXEC_MAX_STDIN:
            raise errors.Invalid(f"exec stdin is {len(stdin)} bytes, more than {EXEC_MAX_STDIN}")
        host = _ready_host(inst)
        try:
            return await self.agents.exec_in_instance(
                host, inst["uuid"], argv=list(argv), env=dict(env or {}),
                stdin_b64=base64.b64encode(stdin).decode(), exec_timeout=timeout, output_limit=output_limit,
                request_id=ctx.request_id,
            )
        except TimeoutError:
            raise ServiceUnavailable(f"Compute host {host} did not answer in time") from None

    async def server_samples(self, ctx: RequestContext, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Usage readings of the caller's servers `rows`, one agent call per host (samples.py)."""
        return await samples.server_samples(self.agents, ctx, rows)

    async def lock(self, ctx: RequestContext, inst: dict[str, Any], reason: str | None) -> None:
        is_owner = inst["project_id"] == ctx.project_id
        if inst["locked"] and is_owner:
            return
        values = {"locked": True, "locked_by": "owner" if is_owner else "admin"}
        if reason:
            values["locked_reason"] = reason
        await self._api_event(ctx, inst, act.LOCK, "api_lock", values)

    async def unlock(self, ctx: RequestContext, inst: dict[str, Any]) -> None:
        expected = "owner" if inst["project_id"] == ctx.project_id else "admin"
        if inst["locked_by"] and inst["locked_by"] != expected:
            policy.authorize(ctx, "compute:servers:unlock:unlock_override")
        await self._api_event(ctx, inst, act.UNLOCK, "api_unlock", {"locked": False, "locked_by": None, "locked_reason": None})

    async def _api_event(self, ctx: RequestContext, inst: dict[str, Any], action: str, event_name: str, values: dict[str, Any]) -> None:
        async with self.db.write() as conn:
            await act.record_action(conn, ctx, inst["uuid"], action)
        async with act.event(self.db, inst["uuid"], ctx.request_id, event_name, None):
            async with self.db.write() as conn:
                await inst_db.cas_update(conn, inst["uuid"], values)

    # --- metadata and tags (read-modify-write inside one write transaction) ---

    async def change_metadata(
        self, ctx: RequestContext, inst: dict[str, Any], api_name: str, update: dict[str, str], *, replace: bool = False,
        delete_key: str | None = None,
    ) -> dict[str, str]:
        tr.check_lock(ctx, inst)
        tr.check_state(inst, api_name, tr.METADATA_VM_STATES, None, True)
        async with self.db.write() as conn:
            current = await self._locked_row(conn, inst["uuid"])
            md = {} if replace else dict(current["metadata"] or {})
            if delete_key is not None:
                if delete_key not in md:
                    raise errors.NotFound("Metadata item was not found")
                del md[delete_key]
            md.update(update)
            await self._check_metadata_quota(conn, inst["project_id"], len(md))
            await inst_db.cas_update(conn, inst["uuid"], {"metadata": md})
        return md

    async def change_tags(
        self, inst: dict[str, Any], api_name: str, *, replace: list[str] | None = None, add: str | None = None,
        remove: str | None = None,
    ) -> tuple[list[str], bool]:
        """Returns (tags, changed). Tags change only in stable vm_states, as in Nova."""
        if inst["vm_state"] not in tr.METADATA_VM_STATES:
            raise tr.invalid_state(api_name, inst["uuid"], "vm_state", inst["vm_state"])
        async with self.db.write() as conn:
            tags = list((await self._locked_row(conn, inst["uuid"]))["tags"] or [])
            before = list(tags)
            if replace is not None:
                tags = list(dict.fromkeys(replace))
            if add is not None and add not in tags:
                if len(tags) >= 50:
                    raise errors.Invalid("The number of tags exceeded the per-server limit 50")
                tags.append(add)
            if remove is not None:
                if remove not in tags:
                    raise errors.NotFound(f"Instance {inst['uuid']} has no tag '{remove}'")
                tags.remove(remove)
            if tags != before:
                await inst_db.cas_update(conn, inst["uuid"], {"tags": tags})
        return tags, tags != before

    # --- instance actions (os-instance-actions) ---

    async def list_actions(
        self,
        uuid: str,
        *,
        limit: int | None = None,
        marker: str | None = None,
        since: dt.datetime | None = None,
        before: dt.datetime | None = None,
    ) -> list[dict[str, Any]]:
        ia = instance_actions
        q = sa.select(ia).where(ia.c.instance_uuid == uuid)
        if since is not None:
            q = q.where(ia.c.updated_at >= since)
        if before is not None:
            q = q.where(ia.c.updated_at <= before)
        async with self.db.read() as conn:
            if marker is not None:
                m = (
                    await conn.execute(
                        sa.select(ia.c.start_time, ia.c.id).where(ia.c.instance_uuid == uuid, ia.c.request_id == marker)
                    )
                ).first()
                if m is None:
                    raise errors.Invalid(f"Marker {marker} could not be found.")
                q = q.where(sa.or_(ia.c.start_time < m[0], sa.and_(ia.c.start_time == m[0], ia.c.id < m[1])))
            q = q.order_by(ia.c.start_time.desc(), ia.c.id.desc())
            if limit is not None:
                q = q.limit(limit)
            return [dict(r) for r in (await conn.execute(q)).mappings()]

    async def get_action(self, uuid: str, request_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        async with self.db.read() as conn:
            return await act.get_action(conn, uuid, request_id)

    @staticmethod
    async def _locked_row(conn: AsyncConnection, uuid: str) -> dict[str, Any]:
        q = sa.select(instances.c.metadata, instances.c.tags).where(instances.c.uuid == uuid, instances.c.deleted.is_(False))
        if conn.dialect.name != "sqlite":
            q = q.with_for_update()
        row = (await conn.execute(q)).mappings().first()
        if row is None:
            raise errors.NotFound(f"Instance {uuid} could not be found.")
        return dict(row)


_AGENT_CALL_TIMEOUT = 30.0  # seconds an API request waits for an agent's answer
EXEC_MAX_STDIN = 8 << 20  # bytes of stdin an exec may carry (the agent checks it too)

# Exec inside a server (exec_in_server): the owner's members, or an admin (Nova's owner rules);
# no HTTP route exposes it, the PaaS manager calls it.
policy.register({"compute:servers:exec": policy.MEMBER})


def _ready_host(inst: dict[str, Any]) -> str:
    """The host an agent call about `inst` goes to; 409 while the server has none."""
    if not inst.get("host"):
        raise errors.Conflict(f"Instance {inst['uuid']} is not ready")
    return str(inst["host"])

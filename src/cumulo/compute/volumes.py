"""What compute needs of the volume service and of its host's block store (Protocols), and helpers.

Also the pure renderings of block device mappings.

Compute and volume are sibling packages that never import each other (as with netports.py and the
network service): compute names its narrow needs here as Protocols, and the assembly in runtime
hands over adapters (`cumulo.runtime_volumes`). Nova calls Cinder's API for the same things
(nova/volume/cinder.py), and so do these:

- `VolumeClient`: the volume service as the compute API and agents call it, always with a
  RequestContext (the caller's in the API; the server owner's project in the agent, see
  `owner_context`). Records are the volume service's dicts (`id`, `status`, `size` in GiB,
  `multiattach`, `attachments`, `bootable`, `availability_zone`, ...). Refusals come back as the
  domain errors (Invalid 400 "Invalid volume: ...", NotFound 404, Conflict 409, OverQuota 413):
  the compute API surfaces them in Nova's fault format.
  Attach, the 3.27 attachments flow Nova uses: `attachment_create` (API: volume reserved) ->
  `attachment_update(connector)` (agent: attaching, connection_info) -> driver attach ->
  `attachment_complete` (volume in-use). Detach: `begin_detaching` (API) -> driver detach ->
  `attachment_delete` (volume available, or in-use while another attachment remains);
  `roll_detaching` when the driver refused.
- `HostVolumes`: the block store of the agent's host: where a volume's file is (`location`: path
  and QEMU node kind, found by volume id, never a path from a request) and the loop-device table
  the runc driver and the volume worker share (`reap_loops(keep)` releases recorded loop devices of
  volumes no server here holds).

The block device mapping rows (`models.block_device_mapping`) are read and written by
`compute/volume_records.py`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from cumulo import errors
from cumulo.compute import volume_records
from cumulo.context import RequestContext
from cumulo.db import Database

LOG = logging.getLogger(__name__)

# Nova's values of block_device_mapping.source_type / destination_type.
SOURCE_IMAGE, SOURCE_VOLUME, SOURCE_SNAPSHOT, SOURCE_BLANK = "image", "volume", "snapshot", "blank"
SOURCE_TYPES = (SOURCE_IMAGE, SOURCE_VOLUME, SOURCE_SNAPSHOT, SOURCE_BLANK)
DEST_LOCAL, DEST_VOLUME = "local", "volume"
DESTINATION_TYPES = (DEST_LOCAL, DEST_VOLUME)

# Nova's instance action names of the volume operations.
ATTACH_VOLUME, DETACH_VOLUME, SWAP_VOLUME, EXTEND_VOLUME = "attach_volume", "detach_volume", "swap_volume", "extend_volume"

# The connector's platform facts (os-brick's get_connector_properties shape, trimmed to a file
# backend: the host name is what matters).
CONNECTOR_BASE: Mapping[str, Any] = {"platform": "x86_64", "os_type": "linux", "multipath": False,
                                     "enforce_multipath": False, "initiator": None}


class VolumeClient(Protocol):
    """The volume service's calls compute makes (runtime_volumes.VolumeClientAdapter over
    cumulo.volume.service.VolumeService has them)."""

    # ---- volumes ---------------------------------------------------------------------------

    def get_volume(self, ctx: RequestContext, volume_id: str) -> Awaitable[dict[str, Any]]: ...

    def list_volumes(self, ctx: RequestContext) -> Awaitable[list[dict[str, Any]]]:
        """The caller's volumes (Nova's os-volumes proxy)."""
        ...

    def create_volume(
        self, ctx: RequestContext, *, size_gb: int, name: str = "", description: str = "",
        image_id: str | None = None, snapshot_id: str | None = None, source_volid: str | None = None,
        volume_type: str | None = None, availability_zone: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Awaitable[dict[str, Any]]:
        """A new volume (blank, from an image, a snapshot or another volume), `creating` at first:
        poll `get_volume` until `available` (or `error`)."""
        ...

    def delete_volume(self, ctx: RequestContext, volume_id: str) -> Awaitable[None]: ...

    # ---- attachments (Cinder 3.27+) -------------------------------------------------------

    def attachment_create(
        self, ctx: RequestContext, volume_id: str, instance_uuid: str, *,
        connector: Mapping[str, Any] | None = None, mode: str = "rw",
    ) -> Awaitable[dict[str, Any]]:
        """Reserve the volume for the server (volume `reserved`; with a connector `attaching`).
        A volume attached elsewhere and not multiattach: Invalid (400)."""
        ...

    def attachment_update(self, ctx: RequestContext, attachment_id: str,
                          connector: Mapping[str, Any]) -> Awaitable[dict[str, Any]]:
        """The host's connector: the attachment is `attaching` and carries `connection_info`."""
        ...

    def attachment_complete(self, ctx: RequestContext, attachment_id: str) -> Awaitable[None]: ...

    def attachment_reconnect(self, ctx: RequestContext, attachment_id: str,
                             connector: Mapping[str, Any]) -> Awaitable[dict[str, Any]]:
        """An attached attachment's connection for the host its server moved to (its connector)."""
        ...

    def attachment_delete(self, ctx: RequestContext, attachment_id: str) -> Awaitable[None]:
        """Drop the attachment (NotFound when already gone): the volume is available again, or
        stays in-use while another attachment remains (multiattach)."""
        ...

    def attachment_get(self, ctx: RequestContext, attachment_id: str) -> Awaitable[dict[str, Any]]: ...

    def attachments_of(self, ctx: RequestContext, volume_id: str,
                       instance_uuid: str) -> Awaitable[list[dict[str, Any]]]:
        """The volume's attachments for the server, whatever their status (the reconcile's way to an
        attachment a crash made before the mapping recorded its id)."""
        ...

    def begin_detaching(self, ctx: RequestContext, volume_id: str) -> Awaitable[None]: ...

    def roll_detaching(self, ctx: RequestContext, volume_id: str) -> Awaitable[None]: ...

    # ---- snapshots (snapshots of volume-backed servers) ------------------------------------

    def create_snapshot(
        self, ctx: RequestContext, volume_id: str, *, name: str = "", description: str = "",
        force: bool = True, metadata: Mapping[str, str] | None = None,
    ) -> Awaitable[dict[str, Any]]:
        """A snapshot of the volume (`force`: even while in-use, as Nova asks), `creating` at first."""
        ...

    def get_snapshot(self, ctx: RequestContext, snapshot_id: str) -> Awaitable[dict[str, Any]]: ...

    def list_snapshots(self, ctx: RequestContext) -> Awaitable[list[dict[str, Any]]]: ...

    def delete_snapshot(self, ctx: RequestContext, snapshot_id: str) -> Awaitable[None]: ...


class VolumeLocation(Protocol):
    """Where a volume's data is on the host (cumulo.blockstore.base.Location has these)."""

    @property
    def path(self) -> str: ...

    @property
    def kind(self) -> str: ...


class HostVolumes(Protocol):
    """The block store of the agent's host (runtime_volumes.HostBlockStore has it)."""

    def location(self, volume_id: str) -> Awaitable[VolumeLocation]:
        """The volume's file (by id only). NotFound when the store has no such volume."""
        ...

    def reap_loops(self, keep: set[str]) -> Awaitable[list[str]]:
        """Release the recorded loop devices of volumes not in `keep`; returns the released ids."""
        ...

    def nbd_credentials(self, attachment_id: str, identity: str) -> Awaitable[str]:
        """The dir of this host's TLS key file for the attachment's NBD connection (written, 0600;
        the key derived from the cluster secret): what QEMU's tls-creds-psk reads."""
        ...

    def forget_credentials(self, attachment_id: str) -> Awaitable[None]:
        """The attachment's key file removed (none: fine)."""
        ...


class VolumeEvents(Protocol):
    """What the compute side offers the volume worker (Nova's os-server-external-events, reached in
    process): runtime wires it as the worker's notifier."""

    def volume_extended(self, volume_id: str, new_size_gb: int) -> Awaitable[None]:
        """An attached volume grew: every server holding it asks its driver to tell the guest."""
        ...


def owner_context(inst: Mapping[str, Any], request_id: str | None = None) -> RequestContext:
    """The context an agent acts in for a server's volumes: the server owner's project with the
    member role (Nova forwards the user's token to Cinder; the agent has the owner's ids), plus
    `service` (Nova's service token: Cinder lets only it delete an attachment a server is
    connected through)."""
    roles = frozenset({"member", "reader", "service"})  # service: Cinder lets it delete a connected attachment
    if request_id:
        return RequestContext(user_id=inst.get("user_id"), project_id=inst.get("project_id"), roles=roles,
                              request_id=request_id)
    return RequestContext(user_id=inst.get("user_id"), project_id=inst.get("project_id"), roles=roles)


def connector_for(host: str, device_name: str | None, ip: str = "") -> dict[str, Any]:
    """The connector an agent hands the volume service (os-brick's shape). `ip`: the host's
    underlay address; with one, a volume of another host comes over NBD (connection_info
    `nbd`), else the volume host's file is opened in place (`cumulo_file`)."""
    doc = {**CONNECTOR_BASE, "host": host, "mountpoint": device_name}
    if ip:
        doc["ip"] = ip
    return doc


def volumes_attached(rows: Sequence[Mapping[str, Any]], *, with_delete_flag: bool) -> list[dict[str, Any]]:
    """The server view's `os-extended-volumes:volumes_attached`: the server's volumes in BDM order
    (`delete_on_termination` from 2.3, as Nova shows it)."""
    out: list[dict[str, Any]] = []
    for row in rows:
        if not row.get("volume_id") or row.get("destination_type") != DEST_VOLUME:
            continue
        item: dict[str, Any] = {"id": row["volume_id"]}
        if with_delete_flag:
            item["delete_on_termination"] = bool(row.get("delete_on_termination"))
        out.append(item)
    return out


def is_swap(row: Mapping[str, Any]) -> bool:
    """A swap disk mapping (blank -> local, guest_format swap); its volume_size is in MiB, as Nova's."""
    return bool(row.get("source_type") == SOURCE_BLANK and row.get("destination_type") == DEST_LOCAL
                and row.get("guest_format") == "swap")


def is_ephemeral(row: Mapping[str, Any]) -> bool:
    """An ephemeral disk mapping (blank -> local, not swap); its volume_size is in GiB."""
    return bool(row.get("source_type") == SOURCE_BLANK and row.get("destination_type") == DEST_LOCAL
                and row.get("guest_format") != "swap")


def local_disk_sizes(rows: Sequence[Mapping[str, Any]], ephemeral_gb: int, swap_mb: int) -> tuple[int, int]:
    """(ephemeral GiB, swap MiB) a server's local mappings give it; the flavor's (the arguments)
    where it has none of a kind, and for a mapping without a size (as Nova)."""
    eph = [r for r in rows if is_ephemeral(r)]
    swaps = [r for r in rows if is_swap(r)]
    ephemeral = sum(int(r.get("volume_size") or ephemeral_gb) for r in eph) if eph else ephemeral_gb
    swap = int(swaps[0].get("volume_size") or swap_mb) if swaps else swap_mb
    return ephemeral, swap


def volume_rows(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The mappings that are volumes (destination volume, a volume id), in BDM order."""
    return [r for r in rows if r.get("destination_type") == DEST_VOLUME and r.get("volume_id")]


async def release_rows(client: VolumeClient | None, inst: Mapping[str, Any],
                       rows: Iterable[Mapping[str, Any]]) -> None:
    """Delete the attachments of `rows` and the volumes marked delete_on_termination (also used by
    the API for a server deleted before it reached a host)."""
    if client is None:
        return
    ctx = owner_context(inst)
    for row in volume_rows(list(rows)):
        volume_id = str(row["volume_id"])
        try:
            if row.get("attachment_id"):
                with contextlib.suppress(errors.NotFound):
                    await client.attachment_delete(ctx, str(row["attachment_id"]))
            if row.get("delete_on_termination"):
                with contextlib.suppress(errors.NotFound):
                    await client.delete_volume(ctx, volume_id)
        except Exception as exc:  # noqa: BLE001 - the server goes anyway; the volume stays listable
            LOG.warning("releasing volume %s of server %s failed: %s", volume_id, inst.get("uuid"), exc)


async def release_unplaced(db: Database, client: VolumeClient | None, inst: Mapping[str, Any]) -> None:
    """A server deleted before it reached a host: its reserved volumes given back (and those with
    delete_on_termination deleted), its block device mappings removed."""
    async with db.read() as conn:
        rows = await volume_records.of_instance(conn, str(inst["uuid"]))
    if rows:
        await release_rows(client, inst, rows)
        async with db.write() as conn:
            await volume_records.delete_of_instance(conn, str(inst["uuid"]))

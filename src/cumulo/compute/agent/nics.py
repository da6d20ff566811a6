"""A server's NICs on the agent: its ports plugged by the host's network agent before the driver
starts it, hot plug and unplug (os-interface), and the ports unplugged and released at delete.

Nova's compute manager does the same with Neutron: the ports exist (the API made them), the agent
binds and plugs them on this host and hands the driver one NicSpec per port; at terminate the
ports the server's create made are deleted and the ones the user brought only detached.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cumulo import errors
from cumulo.compute import netports
from cumulo.compute.drivers.base import Capability, InstanceSpec, NicSpec, driver_for, supports

if TYPE_CHECKING:
    from cumulo.compute.agent.node import Node

LOG = logging.getLogger(__name__)


async def plug(node: Node, uuid: str, port_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Bind and plug the ports on this host: one NicSpec dict per port, in order ([] without networking)."""
    if not port_ids or node.nics is None:
        return []
    return list(await node.nics.plug_ports(node.host, list(port_ids), uuid))


async def with_nics(node: Node, inst: Mapping[str, Any], spec: InstanceSpec) -> InstanceSpec:
    """The build's spec with the server's NICs (and the config drive's view of them)."""
    docs = await plug(node, str(inst["uuid"]), netports.port_ids_of(inst))
    if not docs:
        return spec
    return dataclasses.replace(spec, nics=tuple(NicSpec.from_dict(d) for d in docs), network_info=netports.network_info(docs))


async def release(node: Node, inst: Mapping[str, Any]) -> None:
    """At terminate: unplug the ports here, delete the ones made for the server, detach the user's.
    Failures are logged: the network agent's sync reaps what is left, the ports stay listable."""
    uuid = str(inst["uuid"])
    ids = netports.port_ids_of(inst)
    with contextlib.suppress(Exception):
        await unplug(node, ids)
    if node.network is not None:
        try:
            await node.network.release_ports_of_device(uuid, keep=netports.user_ports_of(inst))
        except Exception as exc:  # noqa: BLE001 - the delete goes on; the port is left for the admin
            LOG.warning("releasing the ports of %s failed: %s", uuid, exc)


async def attach(node: Node, uuid: str, port_id: str) -> None:
    """os-interface attach on this host: the network agent plugs the port, the driver hot plugs the
    NIC (Capability.NICS; a driver without it cannot take one: 409)."""
    async with node.locks.hold(uuid):
        if await node.load(uuid) is None:
            raise errors.NotFound(f"Instance {uuid} could not be found.")
        docs = await plug(node, uuid, [port_id])
        if not docs:
            return  # no network agent here (fake hosts without one): the port is recorded only
        if not supports(node.driver, Capability.NICS):
            with contextlib.suppress(Exception):
                await unplug(node, [port_id])
            raise errors.Conflict(f"Failed to attach network adapter device to {uuid}: the driver has no hot plug.")
        try:
            await driver_for(node.driver, Capability.NICS, node=node.name).attach_nic(uuid, NicSpec.from_dict(docs[0]))
        except Exception:
            with contextlib.suppress(Exception):
                await unplug(node, [port_id])
            raise


async def detach(node: Node, uuid: str, port_id: str) -> None:
    """os-interface detach on this host: the driver unplugs the NIC, the network agent the port."""
    async with node.locks.hold(uuid):
        if supports(node.driver, Capability.NICS):
            await driver_for(node.driver, Capability.NICS, node=node.name).detach_nic(uuid, port_id)
        await unplug(node, [port_id])


async def unplug(node: Node, port_ids: Sequence[str]) -> None:
    if node.nics is not None and port_ids:
        await node.nics.unplug_ports(node.host, list(port_ids))

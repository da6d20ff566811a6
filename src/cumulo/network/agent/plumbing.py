"""Applying a host plan: `RealPlumbing` with cumulo.netplane, `NoPlumbing` on a fake host.

Every step ensures, never recreates: a namespace, bridge, veth or dnsmasq that is there stays.
The security group tables are changed in one transaction (conntrack, and so established flows,
survive), in place by a delta (netplane.sgdelta) from what this process last applied in that
namespace, or replaced whole the first time and when a delta is refused. A bridge and a DHCP
interface ensured once are not read again until the next sync (`forget`), unless the namespace
is a new one (its identity changed): plug_ports on a network already here runs no `ip` at all.
A network's admin_state_up is its bridge's state: down, no frame crosses it (bridge.apply).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import uuid as uuidlib
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from cumulo import host
from cumulo.errors import HostError, Invalid
from cumulo.netplane import (
    bridge,
    conntrack,
    dhcp,
    external,
    netns,
    orphans,
    physnet,
    router,
    secgroups,
    sgdelta,
    vxlan,
)
from cumulo.netplane import metadata as metadata_plane
from cumulo.network.agent.state import HostPlan, NetworkPlan
from cumulo.network.metadata import MetadataService

LOG = logging.getLogger(__name__)
# Which cloud (state dir) owns which networks and routers on this host, one file each: a cloud never
# reaps what another cloud on the same host owns while that one runs or its state dir exists.
REGISTRY = Path("/run/cumulo/netplane-owners")


class Plumbing(Protocol):
    real: bool

    async def ensure_network(self, plan: NetworkPlan) -> None: ...

    async def drop_network(self, network_id: str) -> None: ...

    async def ensure_router(self, plan: router.Router) -> None: ...

    async def reap(self, plan: HostPlan) -> orphans.Inventory: ...


class NoPlumbing:
    """A fake host: IPAM and bindings happen in the DB, nothing on the machine."""

    real = False

    async def ensure_network(self, plan: NetworkPlan) -> None:
        return None

    async def drop_network(self, network_id: str) -> None:
        return None

    async def ensure_router(self, plan: router.Router) -> None:
        return None

    async def reap(self, plan: HostPlan) -> orphans.Inventory:
        return orphans.Inventory()


def keep_devices(plan: HostPlan, found: orphans.Inventory, others: frozenset[str] = frozenset()) -> dict[str, frozenset[str]]:
    """Per network, the bridge devices reaping leaves: the plan's, and anything not named like a
    Cumulo port end (`tap...`, `cxn...`), which other parts (the metadata service) may own; all
    of a network another live cloud owns."""
    wanted = plan.devices()
    out: dict[str, frozenset[str]] = {}
    for net_id, have in found.bridge_ports.items():
        foreign = {d for d in have if net_id in others or not d.startswith(("tap", external.NS_PREFIX))}
        out[net_id] = wanted.get(net_id, frozenset()) | foreign
    return out


def stale_of(plan: HostPlan, found: orphans.Inventory, others: frozenset[str] = frozenset(),
             mine: frozenset[str] | None = None) -> orphans.Inventory:
    """What reaping removes: everything found that neither the plan nor another live cloud on the
    host (`others`: the network and router ids it registered) owns (a pure function). Nothing in
    another cloud's namespaces is judged here, not even a stray table: that cloud reaps its own.
    `mine`: the ids this cloud recorded as its own (or took over from a cloud that is gone): only
    their namespaces, dnsmasq and host links go, never an id nobody recorded (None: any id)."""
    stale = orphans.orphans(found, networks={*plan.networks, *others}, routers={*(r.id for r in plan.routers), *others},
                            external_networks={*plan.external_links, *others},
                            devices=keep_devices(plan, found, others))
    def foreign(ns: str | None) -> bool:
        return ns is not None and any(ns.startswith(p) and ns[len(p):] in others
                                      for p in (netns.NETWORK_PREFIX, netns.ROUTER_PREFIX))

    if any(foreign(ns) for ns in stale.tables):
        stale = dataclasses.replace(stale, tables={ns: t for ns, t in stale.tables.items() if not foreign(ns)})
    if mine is not None:
        links = {external.host_device(i) for i in mine if _is_uuid(i)}
        stale = dataclasses.replace(
            stale, networks=tuple(n for n in stale.networks if n in mine),
            routers=tuple(r for r in stale.routers if r in mine),
            dnsmasq={n: p for n, p in stale.dnsmasq.items() if n in mine},
            dhcp_dirs=tuple(d for d in stale.dhcp_dirs if d in mine),
            host_links=tuple(h for h in stale.host_links if h in links))
    return stale


def _is_uuid(text: str) -> bool:
    try:
        uuidlib.UUID(text)
    except ValueError:
        return False
    return True


def _entry(registry: Path, owner: str) -> Path:
    return registry / (hashlib.sha256(owner.encode()).hexdigest()[:16] + ".json")


def entry_path(owner: str, registry: Path = REGISTRY) -> Path:
    """The registry file of the cloud whose state dir is `owner` (JSON: owner, pid, ids)."""
    return _entry(registry, owner)


def register(registry: Path, owner: str, ids: set[str]) -> None:
    """Blocking: record the network and router ids of the cloud whose state dir is `owner` (and
    this process), so another cloud on the same host never takes them for orphans."""
    registry.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = registry / f".{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"owner": owner, "pid": os.getpid(), "ids": sorted(ids)}))
    tmp.replace(_entry(registry, owner))


@dataclasses.dataclass(frozen=True)
class Claims:
    """The host's ownership registry as one cloud sees it."""

    recorded: frozenset[str] = frozenset()  # the ids this cloud's entry holds (a crashed run's too)
    others: frozenset[str] = frozenset()  # ids of other clouds that still own them
    abandoned: frozenset[str] = frozenset()  # ids of clouds gone for good (dead, state dir removed)
    abandoned_entries: tuple[Path, ...] = ()


def claims(registry: Path, owner: str) -> Claims:
    """Blocking: this cloud's recorded ids; the ids other clouds registered, while their process
    lives or their state dir (their DB: what owns them) is still there; and those of clouds gone
    for good, whose leftovers any cloud may reap (then drop their entries: `drop_entries`)."""
    mine_entry = _entry(registry, owner)
    recorded: set[str] = set()
    others: set[str] = set()
    abandoned: set[str] = set()
    gone: list[Path] = []
    try:
        entries = list(registry.glob("*.json"))
    except OSError:
        return Claims()
    for entry in entries:
        try:
            data = json.loads(entry.read_text())
            pid, other, ids = int(data["pid"]), str(data["owner"]), [str(i) for i in data["ids"]]
        except (OSError, ValueError, KeyError, TypeError):
            if entry != mine_entry:
                gone.append(entry)
            continue
        if entry == mine_entry:
            recorded.update(ids)
        elif not host.pid_alive(pid) and not Path(other).exists():
            abandoned.update(ids)
            gone.append(entry)
        else:
            others.update(ids)
    return Claims(frozenset(recorded), frozenset(others), frozenset(abandoned - others), tuple(gone))


def others_of(registry: Path, owner: str) -> frozenset[str]:
    """Blocking: the ids other clouds registered and still own (see `claims`)."""
    return claims(registry, owner).others


def drop_entries(entries: tuple[Path, ...]) -> None:
    for entry in entries:
        entry.unlink(missing_ok=True)


def is_empty(inv: orphans.Inventory) -> bool:
    return not (inv.networks or inv.routers or inv.bridge_ports or any(inv.tables.values()) or inv.dnsmasq
                or inv.dhcp_dirs or inv.host_links)


class RealPlumbing:
    real = True

    def __init__(self, run_dir: Path = dhcp.RUN_DIR, metadata: MetadataService | None = None,
                 registry: Path | None = None, owner: str = "", underlay_ns: str | None = None,
                 uplinks: Iterable[str] = ()) -> None:
        self.run_dir = run_dir
        # The host's interfaces on physical networks (physical_interface_mappings): moved into a
        # flat network's namespace while the host carries it, moved back before it is deleted.
        self.uplinks = frozenset(uplinks)
        self._uplinks: dict[str, tuple[tuple[int, int] | None, str]] = {}  # ns -> (identity, its uplink)
        self.underlay_ns = underlay_ns  # where VXLAN devices are made (None: this process's namespace)
        self._tunnels: dict[str, tuple[tuple[int, int] | None, vxlan.Tunnel | None]] = {}  # ns -> its VXLAN port
        self.registry = registry or REGISTRY
        self.owner = owner or f"pid:{os.getpid()}"  # the cloud's state dir: what owns this data plane
        self.metadata = metadata  # 169.254.169.254 in every network namespace (network/metadata.py)
        # namespace -> (its identity, the security group tables this process last applied there)
        self._firewalls: dict[str, tuple[tuple[int, int] | None, sgdelta.Applied]] = {}
        # Steps known done in a namespace of that identity since the last sync (forget() clears them):
        self._bridges: dict[str, tuple[tuple[int, int] | None, int, bool]] = {}  # ns -> (identity, mtu, up)
        self._dhcp_ifaces: dict[str, tuple[tuple[int, int] | None, dhcp.Interface]] = {}
        self._routers: dict[str, tuple[tuple[tuple[int, int] | None, ...], router.Router]] = {}
        self._floating: dict[str, tuple[tuple[str, str], ...]] = {}  # router -> (floating, fixed) it NATs
        self._pending: dict[str, asyncio.Future[None]] = {}  # ns -> its second transaction under way
        self._owned: set[str] = set()  # the network and router ids registered as this process's

    async def _own(self, ident: str) -> None:
        if ident not in self._owned:
            self._owned.add(ident)
            await asyncio.to_thread(register, self.registry, self.owner, set(self._owned))

    def forget(self) -> None:
        """A full sync starts (the agent's start): ensure every bridge, DHCP interface and router
        again (the firewall state stays: it is checked against the namespace's identity, and a
        failed delta falls back to a replace)."""
        self._bridges.clear()
        self._dhcp_ifaces.clear()
        self._routers.clear()
        self._tunnels.clear()
        self._uplinks.clear()

    async def ensure_network(self, plan: NetworkPlan) -> None:
        await self._own(plan.id)
        ns = plan.ns
        fw = plan.firewall
        up = plan.admin_state_up
        change = bridge.Change()
        if plan.host_link is not None:
            change = await external.ensure_host_link(plan.id, plan.host_link, mtu=plan.mtu, up=up)
            host_port = await external.host_port(plan.id)
            fw = secgroups.Firewall(ports=(*fw.ports, host_port), rules={**fw.rules, external.HOST_GROUP: external.HOST_RULES},
                                    members=fw.members)
            ident = netns.identity(ns)
        else:
            ident = netns.identity(ns)
            if ident is None or self._bridges.get(ns) != (ident, plan.mtu, up):
                # a network spanning hosts: each host's bridge its own MAC on the one segment
                mac = bridge.bridge_mac(f"{ns}@{plan.tunnel.local}") if plan.tunnel is not None else None
                change = await bridge.apply(ns, mtu=plan.mtu, up=up, mac=mac)
                ident = netns.identity(ns)
                self._bridges[ns] = (ident, plan.mtu, up)
        if change.lowered or change.raised:
            LOG.info("network agent: network %s's bridge %s (admin_state_up %s)", plan.id,
                     "down" if change.lowered else "up", up)
        await self._uplink(ns, ident, plan)
        await self._tunnel(ns, ident, plan)
        await self._firewall(ns, ident, fw)
        if plan.dhcp_port is not None and plan.wants_dhcp:
            known = self._dhcp_ifaces.get(ns) == (ident, plan.dhcp_port)
            await dhcp.ensure(self.run_dir, ns, plan.dhcp_config, plan.dhcp_port, interface_known=known)
            self._dhcp_ifaces[ns] = (ident, plan.dhcp_port)
        elif not plan.wants_dhcp:
            await dhcp.stop(self.run_dir, plan.id)
            self._dhcp_ifaces.pop(ns, None)
        if self.metadata is not None and up:
            if change.raised:  # the reply route through br0 went with the bridge's down
                try:
                    await metadata_plane.plumb(ns)
                except Exception:  # noqa: BLE001 - the next sync tries again; the network works without it
                    LOG.exception("network agent: metadata routes of %s not restored", ns)
            await self.metadata.serve(plan.id)

    async def _uplink(self, ns: str, ident: tuple[int, int] | None, plan: NetworkPlan) -> None:
        """The host's interface on the network's physical network in its namespace and on its
        bridge (netplane.physnet), once per namespace until the next full sync."""
        if plan.uplink is None or self._uplinks.get(ns) == (ident, plan.uplink):
            return
        try:
            if await physnet.ensure_uplink(ns, plan.uplink, mtu=plan.mtu):
                LOG.info("network agent: %s bridged to this host's %s (its physical network)", plan.id, plan.uplink)
        except Invalid as exc:  # a mapping naming an interface the host lacks: the setting is wrong
            LOG.error("network agent: network %s has no uplink: %s", plan.id, exc)
            return
        self._uplinks[ns] = (ident, plan.uplink)

    async def _tunnel(self, ns: str, ident: tuple[int, int] | None, plan: NetworkPlan) -> None:
        """The network's VXLAN port and its peers (netplane.vxlan), when it has one; a port it had
        and no longer has, removed. Nothing at all on one host (no tunnel ever planned)."""
        known = self._tunnels.get(ns)
        if known is not None and known == (ident, plan.tunnel):
            return
        if plan.tunnel is not None:
            await vxlan.ensure(ns, plan.tunnel, mtu=plan.mtu, underlay_ns=self.underlay_ns)
        elif known is not None:
            await vxlan.remove(ns)
        else:
            return
        self._tunnels[ns] = (ident, plan.tunnel)

    async def _firewall(self, ns: str, ident: tuple[int, int] | None, fw: secgroups.Firewall) -> None:
        """The namespace's security group tables made `fw`: in place (sgdelta) when this process
        knows what they hold, else both replaced (with br_netfilter turned on there)."""
        await self._settle(ns)
        have = self._firewalls.get(ns)
        if have is not None and have[0] == ident and have[1].fw == fw:
            return
        if have is None or have[0] != ident or ident is None:
            await secgroups.apply(ns, fw)
            self._firewalls[ns] = (ident, sgdelta.applied(fw))
            return
        # Members that left a group leave its sets in a second transaction, off the caller's path
        # (deleting set elements is the slow part): until then the sets hold what they held before.
        first = sgdelta.widened(have[1], fw)
        script, after = sgdelta.delta(have[1], first)
        try:
            if script:
                await secgroups.apply_script(ns, script)
        except HostError as exc:  # refused whole, so nothing changed: replace both tables
            LOG.warning("network agent: security group delta refused in %s, replacing the tables: %s", ns, exc)
            script, after = sgdelta.whole(fw)
            await secgroups.apply_script(ns, script)
            first = fw
        self._firewalls[ns] = (ident, after)
        if first == fw:
            await self._cut_revoked(ns, have[1].fw, fw)
        else:
            self._pending[ns] = asyncio.ensure_future(self._narrow(ns, ident, after, fw, have[1].fw))

    async def _settle(self, ns: str) -> None:
        """Wait for the namespace's second transaction, if one is under way (it logs its own failure)."""
        task = self._pending.pop(ns, None)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    async def _narrow(self, ns: str, ident: tuple[int, int] | None, mid: sgdelta.Applied, fw: secgroups.Firewall,
                      old: secgroups.Firewall) -> None:
        """The second transaction: the members that left deleted from the sets (then the
        established flows they had, cut). A failure leaves the tables unknown: replaced next time."""
        try:
            script, after = sgdelta.delta(mid, fw)
            if script:
                await secgroups.apply_script(ns, script)
        except Exception as exc:  # noqa: BLE001 - logged; the next ensure replaces the tables whole
            LOG.warning("network agent: members that left not deleted in %s: %s", ns, exc)
            if self._firewalls.get(ns) == (ident, mid):
                self._firewalls.pop(ns, None)
            return
        if self._firewalls.get(ns) == (ident, mid):
            self._firewalls[ns] = (ident, after)
        await self._cut_revoked(ns, old, fw)

    async def close(self) -> None:
        """The agent stops: second transactions under way finish."""
        for ns in list(self._pending):
            await self._settle(ns)

    @staticmethod
    async def _cut_revoked(ns: str, old: secgroups.Firewall, new: secgroups.Firewall) -> None:
        """Established flows the change no longer allows stop too (Neutron flushes their conntrack
        entries): a removed rule, a member gone from a remote group, port security turned on."""
        try:
            cut = conntrack.revoked(old, new)
            gone = await conntrack.flush(ns, cut) if cut else 0
        except Exception as exc:  # noqa: BLE001 - the rules are in place; only established flows may linger
            LOG.warning("network agent: conntrack entries of revoked flows not deleted in %s: %s", ns, exc)
            return
        LOG.debug("network agent: %d established flow(s) cut in %s", gone, ns)

    def _drop_known(self, ns: str) -> None:
        self._firewalls.pop(ns, None)
        self._bridges.pop(ns, None)
        self._dhcp_ifaces.pop(ns, None)
        self._tunnels.pop(ns, None)
        self._uplinks.pop(ns, None)

    async def drop_network(self, network_id: str) -> None:
        ns = netns.network_ns(network_id)
        if self.metadata is not None:
            await self.metadata.stop(network_id)  # its socket would keep the namespace alive
        await dhcp.stop(self.run_dir, network_id)
        await physnet.release(ns, self.uplinks)  # the host's interface outlives the namespace
        # Its VXLAN port first: a namespace's links die with it only when the kernel's cleanup of
        # the namespace runs (later, in a work queue), and until then the VNI stays taken in the
        # underlay namespace, where a rejoin of the network makes the port again.
        await vxlan.remove(ns)
        await netns.delete(ns)
        self._drop_known(ns)

    async def ensure_router(self, plan: router.Router) -> None:
        """router.ensure, unless this process made exactly this router in these very namespaces
        (the router's and its networks') since the last full sync: its links, addresses and NAT
        tables are then as planned (replacing its tables costs the kernel ~10 ms a sync)."""
        await self._own(plan.id)
        spaces = (plan.ns, *(i.network_ns for i in plan.interfaces),
                  *((plan.gateway.network_ns,) if plan.gateway else ()))
        key = tuple(netns.identity(n) for n in spaces)
        if None not in key and self._routers.get(plan.id) == (key, plan):
            return
        await router.ensure(plan)
        self._routers[plan.id] = (tuple(netns.identity(n) for n in spaces), plan)
        await self._cut_floating(plan)

    async def _cut_floating(self, plan: router.Router) -> None:
        """A floating IP disassociated (or moved): the flows through it stop too, as Neutron's L3
        agent deletes their conntrack state (new ones are refused by the NAT table already)."""
        now = tuple((f.floating_ip, f.fixed_ip) for f in plan.floating_ips)
        before = self._floating.get(plan.id)
        self._floating[plan.id] = now
        gone = conntrack.floating_gone(before, now) if before is not None else []
        if not gone:
            return
        try:
            await conntrack.flush_addresses(plan.ns, gone)
        except Exception as exc:  # noqa: BLE001 - the NAT is gone; only established flows may linger
            LOG.warning("network agent: conntrack entries of floating IPs %s not deleted in %s: %s", gone, plan.ns, exc)

    async def reap(self, plan: HostPlan) -> orphans.Inventory:
        """Remove what this cloud recorded (its entry, a crashed run's too, and what it owns now) or
        took over from a cloud gone for good, and the plan no longer wants; the entry shrinks to
        the plan only after that, so a crash while reaping leaves the ids recorded. What nobody
        recorded (another tool's namespaces, a cloud's of another registry) is never touched."""
        owned = {*plan.networks, *(r.id for r in plan.routers)}
        seen = await asyncio.to_thread(claims, self.registry, self.owner)
        mine = frozenset({*seen.recorded, *self._owned, *owned, *seen.abandoned})
        self._owned |= owned
        await asyncio.to_thread(register, self.registry, self.owner, set(mine))
        found = await orphans.discover(self.run_dir)
        stale = stale_of(plan, found, seen.others, mine)
        if not is_empty(stale):
            LOG.info("network agent %s: reaping orphans %s", plan.host, stale)
            if self.metadata is not None:
                for n in stale.networks:
                    await self.metadata.stop(n)
            for n in stale.networks:
                await physnet.release(netns.network_ns(n), self.uplinks)
            await orphans.reap(self.run_dir, stale)
            for n in stale.networks:
                self._drop_known(netns.network_ns(n))
            for r in stale.routers:
                self._routers.pop(r, None)
        self._owned = owned
        await asyncio.to_thread(register, self.registry, self.owner, set(self._owned))
        await asyncio.to_thread(drop_entries, seen.abandoned_entries)
        return stale


async def remove_registered(owner: str, *, registry: Path = REGISTRY, run_dir: Path = dhcp.RUN_DIR) -> list[str]:
    """The data plane the cloud of state dir `owner` registered on this host, removed (its
    namespaces with their dnsmasq, its host links) with its entry; the ids. For test teardown and
    a cloud being thrown away: `cumulo up` itself leaves its data plane serving when it stops."""
    entry = _entry(registry, owner)
    try:
        ids = [str(i) for i in json.loads(await asyncio.to_thread(entry.read_text))["ids"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    for ident in ids:
        await dhcp.stop(run_dir, ident)
        await vxlan.remove(netns.network_ns(ident))  # the VNI free at once (drop_network)
        await netns.delete(netns.network_ns(ident))
        await netns.delete(netns.router_ns(ident))
        await external.delete_host_link(ident)
    await asyncio.to_thread(entry.unlink, missing_ok=True)
    return ids

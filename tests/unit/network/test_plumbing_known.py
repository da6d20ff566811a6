"""RealPlumbing's memory of what it made, with the netplane calls stubbed: a bridge and a DHCP
interface ensured once per namespace identity (again after forget() or a namespace made anew),
the security group tables replaced the first time and changed by deltas after, members that left
a group deleted in a second transaction that the next change and close() wait for, a refused
delta falling back to a whole replace, routers ensured again only when their plan changed; a
network's admin state taking its bridge down and up (the metadata reply route restored after)."""

from __future__ import annotations

import dataclasses
import uuid as uuidlib
from pathlib import Path
from typing import Any

import pytest

from cumulo.errors import HostError
from cumulo.netplane import bridge, dhcp, netns, secgroups
from cumulo.netplane import router as nrouter
from cumulo.netplane.secgroups import Firewall, Port, Rule
from cumulo.network.agent import plumbing
from cumulo.network.agent.plumbing import RealPlumbing
from cumulo.network.agent.state import NetworkPlan

G = str(uuidlib.uuid4())
RULES = {G: (Rule("egress", "IPv4"), Rule("ingress", "IPv4", remote_group_id=G))}


def port(i: int) -> Port:
    pid = str(uuidlib.UUID(int=(i + 1) << 96))
    return Port(id=pid, device=netns.port_device(pid), mac=f"fa:16:3e:00:00:{i:02x}", fixed_ips=(f"10.0.0.{i + 10}",),
                security_groups=(G,))


class Host:
    """The calls RealPlumbing makes, recorded; namespaces' identities settable."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.ident: dict[str, tuple[int, int] | None] = {}
        self.refuse = False

        self.bridge_up: dict[str, bool] = {}

        async def ensure_bridge(ns: str, bridge_name: str = "br0", mtu: int = 1500,
                                up: bool | None = None, mac: str | None = None) -> bridge.Change:
            self.calls.append(("bridge", ns))
            self.ident.setdefault(ns, (1, 1))
            was = self.bridge_up.get(ns)
            now = (True if was is None else was) if up is None else up
            self.bridge_up[ns] = now
            return bridge.Change(made=was is None, raised=was is False and now, lowered=bool(was) and not now)

        async def apply(ns: str, fw: Firewall) -> None:
            self.calls.append(("whole", ns))

        async def apply_script(ns: str, script: str) -> None:
            if self.refuse and "delete table" not in script:
                self.refuse = False
                raise HostError("refused")
            self.calls.append(("script", script))

        async def dhcp_ensure(run_dir: Path, ns: str, cfg: Any, iface: Any, *, interface_known: bool = False) -> int:
            self.calls.append(("dhcp", interface_known))
            return 1

        async def router_ensure(plan: nrouter.Router) -> None:
            self.calls.append(("router", plan.id))

        async def nothing(*_: Any, **__: Any) -> None:
            return None

        monkeypatch.setattr(bridge, "apply", ensure_bridge)
        monkeypatch.setattr(secgroups, "apply", apply)
        monkeypatch.setattr(secgroups, "apply_script", apply_script)
        monkeypatch.setattr(dhcp, "ensure", dhcp_ensure)
        monkeypatch.setattr(nrouter, "ensure", router_ensure)
        monkeypatch.setattr(netns, "identity", lambda name: self.ident.get(name))
        monkeypatch.setattr(plumbing, "register", lambda *a, **k: None)
        monkeypatch.setattr(RealPlumbing, "_cut_revoked", staticmethod(nothing))

    def kinds(self) -> list[str]:
        out = [k for k, _ in self.calls]
        self.calls.clear()
        return out


def plan(net: str, *ports: Port, members: tuple[str, ...] = ()) -> NetworkPlan:
    iface = dhcp.Interface(port_id=str(uuidlib.UUID(int=7)), mac="fa:16:3e:00:01:01", addresses=("10.0.0.2/24",))
    return NetworkPlan(id=net, subnets=(dhcp.Subnet(id=str(uuidlib.UUID(int=9)), cidr="10.0.0.0/24"),),
                       firewall=Firewall(ports=ports, rules=RULES, members={G: members}), dhcp_port=iface)


async def test_known_steps_are_skipped_until_forgotten_or_the_namespace_changes(monkeypatch: pytest.MonkeyPatch,
                                                                               tmp_path: Path) -> None:
    host = Host(monkeypatch)
    p = RealPlumbing(run_dir=tmp_path, registry=tmp_path / "reg", owner=str(tmp_path))
    net = str(uuidlib.uuid4())
    ns = netns.network_ns(net)
    await p.ensure_network(plan(net, port(1), members=("10.0.0.11",)))
    assert host.kinds() == ["bridge", "whole", "dhcp"]
    assert host.calls == []
    await p.ensure_network(plan(net, port(1), port(2), members=("10.0.0.11", "10.0.0.12")))
    calls = list(host.calls)
    assert host.kinds() == ["script", "dhcp"] and calls[1] == ("dhcp", True)
    assert "delete table" not in calls[0][1] and port(2).device in calls[0][1]
    # a member leaves: the first transaction deletes nothing, the second (awaited next time) does
    await p.ensure_network(plan(net, port(1), members=("10.0.0.11",)))
    first = [c for c in host.calls if c[0] == "script"][0][1]
    assert "delete element inet cumulo_sg g_" not in first
    await p.close()
    later = [c for c in host.calls if c[0] == "script"][-1][1]
    assert "delete element inet cumulo_sg g_" in later and "10.0.0.12" in later
    host.calls.clear()
    # nothing changed: nothing runs but DHCP's files
    await p.ensure_network(plan(net, port(1), members=("10.0.0.11",)))
    assert host.kinds() == ["dhcp"]
    # a full sync forgets the bridge and the DHCP interface, not the tables
    p.forget()
    await p.ensure_network(plan(net, port(1), members=("10.0.0.11",)))
    assert host.kinds() == ["bridge", "dhcp"]
    # the namespace was made anew: everything again, the tables replaced whole
    host.ident[ns] = (1, 2)
    await p.ensure_network(plan(net, port(1), members=("10.0.0.11",)))
    assert host.kinds() == ["bridge", "whole", "dhcp"]
    # a refused delta: both tables replaced in one script
    host.refuse = True
    await p.ensure_network(plan(net, port(1), port(3), members=("10.0.0.11", "10.0.0.13")))
    scripts = [c[1] for c in host.calls if c[0] == "script"]
    assert len(scripts) == 1 and "delete table" in scripts[0]


async def test_a_router_is_ensured_again_only_when_it_changed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = Host(monkeypatch)
    p = RealPlumbing(run_dir=tmp_path, registry=tmp_path / "reg", owner=str(tmp_path))
    rid, net = str(uuidlib.uuid4()), str(uuidlib.uuid4())
    iface = nrouter.Interface(str(uuidlib.uuid4()), netns.network_ns(net), "fa:16:3e:00:02:01", ("10.0.0.1/24",))
    r = nrouter.Router(rid, interfaces=(iface,))
    host.ident.update({netns.router_ns(rid): (2, 1), netns.network_ns(net): (2, 2)})
    await p.ensure_router(r)
    await p.ensure_router(r)
    assert host.kinds() == ["router"]
    await p.ensure_router(nrouter.Router(rid, interfaces=(iface,), protected=("10.9.9.9",)))
    assert host.kinds() == ["router"]
    host.ident[netns.network_ns(net)] = (2, 3)  # its network's namespace made anew: plug again
    await p.ensure_router(nrouter.Router(rid, interfaces=(iface,), protected=("10.9.9.9",)))
    assert host.kinds() == ["router"]
    p.forget()
    await p.ensure_router(nrouter.Router(rid, interfaces=(iface,), protected=("10.9.9.9",)))
    assert host.kinds() == ["router"]


async def test_admin_state_takes_the_bridge_down_and_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = Host(monkeypatch)
    served: list[str] = []
    plumbed: list[str] = []

    class Metadata:
        async def serve(self, network_id: str) -> None:
            served.append(network_id)

    async def plumb(ns: str) -> None:
        plumbed.append(ns)

    monkeypatch.setattr(plumbing.metadata_plane, "plumb", plumb)
    p = RealPlumbing(run_dir=tmp_path, registry=tmp_path / "reg", owner=str(tmp_path),
                     metadata=Metadata())  # type: ignore[arg-type]
    net = str(uuidlib.uuid4())
    ns = netns.network_ns(net)
    await p.ensure_network(plan(net, port(1)))
    assert host.bridge_up[ns] is True and served == [net] and plumbed == []
    host.calls.clear()
    down = dataclasses.replace(plan(net, port(1)), admin_state_up=False)
    await p.ensure_network(down)
    assert host.bridge_up[ns] is False and ("bridge", ns) in host.calls
    assert served == [net]  # no metadata listener made on a bridge that is down
    host.calls.clear()
    await p.ensure_network(down)  # known: nothing runs on the bridge again
    assert ("bridge", ns) not in host.calls
    p.forget()  # a restarted agent (a full sync) keeps it down
    await p.ensure_network(down)
    assert host.bridge_up[ns] is False and ("bridge", ns) in host.calls
    await p.ensure_network(plan(net, port(1)))
    assert host.bridge_up[ns] is True and plumbed == [ns] and served == [net, net]

"""The data plane's renderers are pure: checked values in, nft and dnsmasq text out."""

from __future__ import annotations

from pathlib import Path

import pytest

from cumulo.errors import Invalid
from cumulo.netplane import dhcp, nft, orphans, router, secgroups
from cumulo.netplane.secgroups import Firewall, Port, Rule

G = "0b6f5a3e-0f1d-4d2c-9a55-3f0c6e7d8a91"
H = "7c2d1e4f-5a6b-4c3d-8e9f-0a1b2c3d4e5f"
GH, HH = G.replace("-", ""), H.replace("-", "")


@pytest.mark.parametrize(("rule", "line"), [
    (Rule("egress", "IPv4"), "meta nfproto ipv4 accept"),
    (Rule("ingress", "IPv6", "icmp"), "meta nfproto ipv6 meta l4proto 58 accept"),
    (Rule("ingress", "IPv4", "tcp", 22, 22, "10.0.0.7/24"),
     "meta nfproto ipv4 ip saddr 10.0.0.0/24 meta l4proto 6 th dport 22 accept"),
    (Rule("egress", "IPv4", "udp", 1000, 2000, "192.0.2.9/32"),
     "meta nfproto ipv4 ip daddr 192.0.2.9 meta l4proto 17 th dport 1000-2000 accept"),
    (Rule("ingress", "IPv4", "icmp", 8, 0), "meta nfproto ipv4 meta l4proto 1 icmp type 8 icmp code 0 accept"),
    (Rule("ingress", "IPv4", "tcp", 1, 65535, "0.0.0.0/0"), "meta nfproto ipv4 meta l4proto 6 accept"),
    (Rule("ingress", "IPv6", "tcp", remote_group_id=G), f"meta nfproto ipv6 ip6 saddr @g_{GH}_6 meta l4proto 6 accept"),
    (Rule("ingress", "IPv4", "112"), "meta nfproto ipv4 meta l4proto 112 accept"),
    (Rule("ingress", "IPv4", remote_ip_prefix="2001:db8::/32"), None),  # another family: never matches
])
def test_rule_lines(rule: Rule, line: str | None) -> None:
    assert secgroups.rule_line(rule) == line


@pytest.mark.parametrize("rule", [
    Rule("sideways"), Rule("ingress", "IPX"), Rule("ingress", "IPv4", "tcp; drop"),
    Rule("ingress", "IPv4", "tcp", 2000, 1000), Rule("ingress", "IPv4", "tcp", 70000),
    Rule("ingress", "IPv4", remote_ip_prefix="10.0.0.0/8 accept"), Rule("ingress", "IPv4", remote_group_id="x;y"),
])
def test_bad_rules_are_refused(rule: Rule) -> None:
    with pytest.raises(Invalid):
        secgroups.rule_line(rule)


def test_render_marks_secured_ports_and_jumps_to_group_chains() -> None:
    a = Port("a", "tap00000000001", "fa:16:3e:00:00:01", ("10.0.0.5",), (("10.0.9.0/24", None),), True, (G,))
    b = Port("b", "tap00000000002", "fa:16:3e:00:00:02", ("10.0.0.6", "2001:db8::6"), (), True, (G, H))
    off = Port("c", "tap00000000003", "fa:16:3e:00:00:03", ("10.0.0.7",), (), False, (G,))
    fw = Firewall(ports=(off, b, a), rules={G: (Rule("ingress", "IPv4", remote_group_id=H),), H: ()},
                  members={H: ("10.0.0.6", "10.0.0.0/25", "2001:db8::6")})
    text = secgroups.render(fw)
    assert '"tap00000000001" : 1, "tap00000000002" : 2' in text
    assert '"tap00000000003"' not in text  # port security off: in no table
    assert f"jump s_{GH}_i" in text and f"jump s_{HH}_e" in text
    assert f"ip saddr @g_{HH}_4 accept" in text
    assert "elements = { 10.0.0.0/25 }" in text  # 10.0.0.6 is inside 10.0.0.0/25: merged
    assert '"tap00000000001" . fa:16:3e:00:00:01 . 10.0.9.0/24' in text
    assert '"tap00000000002" . fa:16:3e:00:00:02 . fe80::f816:3eff:fe00:2' in text  # the EUI-64 link-local
    assert text.count("delete table") == 2


def test_partial_updates_touch_one_group_or_one_set() -> None:
    script = secgroups.render_group(G, (Rule("ingress", "IPv4", remote_group_id=H),), {H: ("10.0.0.6",)})
    assert f"flush chain inet cumulo_sg s_{GH}_i" in script and f"flush set inet cumulo_sg g_{HH}_4" in script
    assert "add element inet cumulo_sg g_" + HH + "_4 { 10.0.0.6 }" in script
    assert "o_tap" not in script and "delete table" not in script
    assert secgroups.render_members(H, ()).count("add element") == 0


def test_values_are_checked_before_they_reach_nft() -> None:
    with pytest.raises(Invalid):
        nft.ifname('tap"; flush ruleset')
    with pytest.raises(Invalid):
        nft.mac("fa:16:3e:00:00:0g")
    with pytest.raises(Invalid):
        secgroups.render(Firewall(ports=(Port("a", "tap1", "fa:16:3e:00:00:01", ("10.0.0.300",)),)))


def test_dhcp_files_render_as_neutron_writes_them() -> None:
    s4 = dhcp.Subnet("6a3a8c56-2cf3-4bd6-a6a7-9d2bbbd6cd11", "10.0.0.0/24", "10.0.0.1",
                     dns_nameservers=("8.8.8.8", "8.8.4.4"), host_routes=(("192.168.0.0/16", "10.0.0.254"),))
    off = dhcp.Subnet("0e8c3f2e-8d1a-4f43-9c36-8a3b0b8f1d22", "10.1.0.0/24", "10.1.0.1", enable_dhcp=False)
    port = "5b1c9a0e-6f4b-4c1e-9f7e-2d3c4b5a6978"
    h = dhcp.Host(port, "FA:16:3E:00:00:05", ((s4.id, "10.0.0.5"), (off.id, "10.1.0.5")),
                  (("bootfile-name", "pxelinux.0", 4), ("bad\nname", "x", 4), ("mtu", "1\n2", 4)))
    cfg = dhcp.Config("f3d1b1f0-7e4a-4c55-8a8b-1b2c3d4e5f60", (s4, off), (h,))
    assert dhcp.render_hosts(cfg) == f"fa:16:3e:00:00:05,host-10-0-0-5,10.0.0.5,set:port-{port.replace('-', '')}\n"
    tag = "tag:subnet-" + s4.id.replace("-", "")
    assert dhcp.render_opts(cfg).splitlines() == [
        f"{tag},option:dns-server,8.8.8.8,8.8.4.4",
        f"{tag},option:classless-static-route,192.168.0.0/16,10.0.0.254,0.0.0.0/0,10.0.0.1",
        f"{tag},249,192.168.0.0/16,10.0.0.254,0.0.0.0/0,10.0.0.1",
        f"{tag},option:router,10.0.0.1",
        f"tag:port-{port.replace('-', '')},option:bootfile-name,pxelinux.0",  # the bad ones never reach the file
    ]
    iface = dhcp.Interface("9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a", "fa:16:3e:00:00:02", ("10.0.0.2/24",))
    argv = dhcp.argv(cfg, dhcp.Paths.of(Path("/s"), cfg.network_id), iface)
    assert f"--dhcp-range=set:subnet-{s4.id.replace('-', '')},10.0.0.0,static,255.255.255.0,86400s" in argv
    assert "--interface=ns-9d8c7b6a5f4" in argv and not any("10.1.0.0" in a for a in argv)


def test_router_nat_maps_floating_ips_both_ways() -> None:
    gw = router.Gateway("1e2d3c4b-5a69-4788-9766-554433221100", "cnet-x", "fa:16:3e:00:00:09", ("172.24.4.10/24",),
                        nexthop="172.24.4.1")
    r = router.Router("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d", gateway=gw,
                      floating_ips=(router.FloatingIp("172.24.4.20", "10.0.0.5"),))
    text = router.render(r)
    assert "172.24.4.20 : 10.0.0.5" in text and "10.0.0.5 : 172.24.4.20" in text
    assert 'oifname "qg1e2d3c4b5a69" snat to 172.24.4.10' in text
    assert "elements = { 172.24.4.1 }" in text and "elements = { 172.24.4.0/24 }" in text
    no_snat = router.render(router.Router(r.id, gateway=router.Gateway(gw.port_id, gw.network_ns, gw.mac,
                                                                       gw.addresses, gw.nexthop, enable_snat=False)))
    assert 'oifname "qg1e2d3c4b5a69" snat to 172.24.4.10' not in no_snat
    with pytest.raises(Invalid):
        router.render(router.Router(r.id, gateway=gw, floating_ips=(router.FloatingIp("172.24.4.20", "10.0.0.5"),
                                                                    router.FloatingIp("172.24.4.20", "10.0.0.6"))))


def test_orphans_are_what_the_db_does_not_own() -> None:
    n1, n2, r1 = G, H, "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
    found = orphans.Inventory(
        networks=(n1, n2), routers=(r1,), bridge_ports={n1: ("tap1", "tap2")},
        tables={None: (), f"cnet-{n1}": (("inet", "cumulo_sg"), ("inet", "cumulo_planted")), f"crtr-{r1}": ()},
        dnsmasq={n1: 10, n2: 11}, dhcp_dirs=(n1, n2), host_links=("cxh0b6f5a3e0f1",))
    stale = orphans.orphans(found, networks=[n1], routers=[], external_networks=[n1], devices={n1: ["tap1"]})
    assert stale.networks == (n2,) and stale.routers == (r1,)
    assert stale.bridge_ports == {n1: ("tap2",)}
    assert stale.tables == {f"cnet-{n1}": (("inet", "cumulo_planted"),)}
    assert stale.dnsmasq == {n2: 11} and stale.dhcp_dirs == (n2,) and stale.host_links == ()


def test_dhcp_metadata_route_goes_before_the_default_route() -> None:
    s = dhcp.Subnet("6a3a8c56-2cf3-4bd6-a6a7-9d2bbbd6cd11", "10.0.0.0/24", "10.0.0.1", metadata_nexthop="10.0.0.2")
    opts = dhcp.render_opts(dhcp.Config("f3d1b1f0-7e4a-4c55-8a8b-1b2c3d4e5f60", (s,)))
    assert "option:classless-static-route,169.254.169.254/32,10.0.0.2,0.0.0.0/0,10.0.0.1" in opts

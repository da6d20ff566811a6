"""OCCI storage, network and links on a real cloud (issue 12, acceptance 1): the EGI rows for
storage and networks (create, query, destroy, every action), linking storage and networks to a
compute on creation and at run time, and network down/up, driven with plain HTTP by the spec
client (tests/system/_occi_client.py) in each of the three renderings (every action and every
run-time link too, looping over the renderings on the module's one container, volume and network),
each checked on the host.

ONE `cumulo up` (runc only: no row here needs a VM; no external link) and ONE busybox container,
made through OCCI with a network and a volume linked on creation. On the host:
- a storage is a file under the cloud's volumes/ of its size; offline seals it (immutable
  attribute), online unseals it; resize grows it; backup and snapshot are Cinder's backup and
  snapshot of it; destroy removes the file;
- a network is Neutron's network + subnet (its ipnetwork CIDR); the container's NIC on it holds an
  address of that CIDR; down takes the network's bridge (br0 in its namespace) down and the
  container's ping to the network's DHCP port stops, up brings both back;
- a storagelink is the volume mounted at /mnt/volumes/<id> inside the container (written and read
  back), gone after the link's delete; a networkinterface is a NIC in the container, gone after
  its delete.
Everything made is deleted at the end, through OCCI where the row is about deleting.

And on the scaled-out cloud (tests/system/cluster.py): the volumes are files of its volume host (dev
host 1), the container runs on another dev host (off_the_volume_host), so every storagelink is a
volume of another host reached over NBD, and its networks are plumbed (and taken down) there.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import subprocess
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from _occi_client import (
    COMPUTE,
    IPNETWORK_ID,
    JSON,
    NETWORK,
    NETWORKINTERFACE,
    RENDERINGS,
    STORAGE,
    STORAGELINK,
    TEXT_OCCI,
    TEXT_PLAIN,
    InlineLink,
    action_id,
    path_id,
)
from _occi_util import (
    OS_TPL_SCHEME,
    RESOURCE_TPL_SCHEME,
    OcciWorld,
    api,
    bridge_up,
    container_ipv4,
    container_pings,
    exec_in,
    immutable,
    network_ns_exists,
    tenant_of,
    validate_json,
    volume_files,
    volume_loops,
    wait_container,
)
from _runc_util import launch_runc, wait_for

if TYPE_CHECKING:
    from conftest import CumuloCloud

GIB = 1 << 30


class World(OcciWorld):
    image: str = ""
    flavor: str = ""
    made: list[str]  # OCCI locations to delete at the end (last made first)

    def tpl(self) -> list[str]:
        return [OS_TPL_SCHEME + self.image, RESOURCE_TPL_SCHEME + self.flavor]

    def track(self, location: str) -> str:
        self.made.append(location)
        return location

    def storage_state(self, location: str, rendering: str = JSON) -> dict[str, Any]:
        return self.occi(rendering).get(location).attributes

    def wait_storage(self, location: str, state: str, timeout: float = 90.0, **attrs: Any) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            a = self.storage_state(location)
            assert a.get("occi.storage.state") != "error", a
            return a if a.get("occi.storage.state") == state and all(a.get(k) == v for k, v in attrs.items()) else None

        return dict(wait_for(ok, timeout=timeout, what=f"{location} {state} {attrs}"))

    def cinder(self, volume_id: str) -> dict[str, Any]:
        r = api(self.cloud, self.demo, "GET", f"/volume/v3/volumes/{volume_id}")
        assert r.status_code == 200, r.text
        return dict(r.json()["volume"])

    def wait_cinder(self, volume_id: str, status: str, timeout: float = 90.0) -> dict[str, Any]:
        return dict(wait_for(lambda: (v := self.cinder(volume_id))["status"] == status and v, timeout=timeout,
                             what=f"volume {volume_id} {status}"))


# and on the scaled-out cloud (tests/system/cluster.py): the volumes on its volume host (dev host 1),
# the container on another dev host (its volumes reach it over NBD), its networks plumbed there
cumulo_configs = ("embedded", "scaled")


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("occi-sn")
    cloud = launch_runc(cumulo_launcher, tmp, config=cumulo_config)
    w = World(cloud, tenant_of(cloud))
    w.made = []
    with cloud.client("cumulo-demo") as c:
        w.image = c.get("/image/v2/images", params={"name": "busybox"}).json()["images"][0]["id"]
        w.flavor = next(f["id"] for f in c.get("/compute/v2.1/flavors").json()["flavors"] if f["name"] == "m1.tiny")
    try:
        yield w
    finally:
        occi = w.occi(JSON)
        computes = [loc for loc in w.made if "/compute/" in loc]
        for loc in computes:  # first, so that their volumes and ports are free when the rest goes
            with contextlib.suppress(Exception):
                occi.delete(loc)
        for loc in computes:
            with contextlib.suppress(AssertionError):
                wait_for(lambda loc=loc: occi.status("GET", loc) == 404, timeout=60, what=f"{loc} deleted")
        for loc in reversed(w.made):
            if loc not in computes:
                with contextlib.suppress(Exception):
                    occi.delete(loc)
        w.close()
        cloud.stop()
        # A storage a failed test left offline has an immutable file: unseal before the dir goes.
        subprocess.run(["chattr", "-R", "-i", str(cloud.host_dir(cloud.volume_host) / "volumes")],  # noqa: S603, S607
                       check=False, capture_output=True)
        cloud.close()


def _cidr() -> str:
    return f"10.{secrets.randbelow(200) + 20}.{secrets.randbelow(250)}.0/24"


def _network(w: World, rendering: str, cidr: str, title: str) -> str:
    gateway = str(ipaddress.ip_network(cidr)[1])
    return w.track(w.occi(rendering).create(
        NETWORK, mixins=[IPNETWORK_ID], attributes={
            "occi.core.title": title, "occi.network.address": cidr, "occi.network.gateway": gateway,
            "occi.network.allocation": "dynamic"}))


# -- storage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_storage_create_query_destroy(world: World, rendering: str) -> None:
    occi = world.occi(rendering)
    title = f"occi-vol-{secrets.token_hex(3)}"
    loc = occi.create(STORAGE, attributes={"occi.core.title": title, "occi.storage.size": 1})
    vid = path_id(loc)
    attrs = world.wait_storage(loc, "online")
    assert attrs["occi.storage.size"] == 1 and attrs["occi.core.title"] == title, attrs
    # The volume service's volume, and its file on the host, of that size.
    vol = world.wait_cinder(vid, "available")
    assert vol["size"] == 1 and vol["name"] == title, vol
    files = volume_files(world.cloud, vid)
    assert files and files[0].stat().st_size == GIB, files
    # Query: the collection lists it, and filtering by its title finds only it.
    assert vid in occi.ids("/storage/")
    assert occi.ids("/storage/", attributes={"occi.core.title": title}) == {vid}
    assert vid not in occi.ids("/storage/", attributes={"occi.core.title": title + "-not"})
    # A full update (PUT, the whole representation) renames it, for the volume service too.
    r = occi.update(loc, kind=STORAGE, attributes={"occi.core.title": title + "-put", "occi.storage.size": 1},
                    replace=True)
    assert r.status_code in (200, 201), r.text
    assert world.cinder(vid)["name"] == title + "-put"
    if rendering == JSON:
        validate_json(occi.get_json(loc), "resource")
        validate_json(occi.request("GET", "/storage/").json(), "resource_collection")
    # Destroy: gone from OCCI, from the volume service and from the host.
    assert occi.delete(loc).status_code in (200, 204)
    wait_for(lambda: api(world.cloud, world.demo, "GET", f"/volume/v3/volumes/{vid}").status_code == 404, timeout=60,
             what=f"volume {vid} deleted")
    assert occi.status("GET", loc) == 404
    wait_for(lambda: not volume_files(world.cloud, vid), timeout=30, what=f"the file of {vid} removed")


def test_storage_actions(world: World) -> None:
    """Every storage action in each of the three renderings, on one volume: offline/online, backup,
    snapshot, resize (the 1.1 action and the 1.2 size update)."""
    js = world.occi(JSON)
    loc = world.track(js.create(STORAGE, attributes={"occi.core.title": "occi-actions", "occi.storage.size": 1}))
    vid = path_id(loc)
    world.wait_storage(loc, "online")
    world.wait_cinder(vid, "available")
    [path] = volume_files(world.cloud, vid)

    try:
        for occi in map(world.occi, RENDERINGS):
            r = occi.action(loc, action_id(STORAGE, "offline"))
            assert r.status_code == 200, (occi.rendering, r.text)
            world.wait_storage(loc, "offline")
            wait_for(lambda: immutable(path), timeout=60, what=f"{path} sealed (offline, {occi.rendering})")
            with pytest.raises(PermissionError):  # sealed: not even root opens it for writing
                path.open("r+b").close()
            assert world.cinder(vid)["status"] == "maintenance"
            assert occi.action(loc, action_id(STORAGE, "offline")).status_code == 409  # already offline
            r = occi.action(loc, action_id(STORAGE, "online"))
            assert r.status_code == 200, (occi.rendering, r.text)
            world.wait_storage(loc, "online")
            assert not immutable(path), occi.rendering
            path.open("r+b").close()
    finally:  # a sealed file would outlive the cloud (its state dir cannot be removed)
        subprocess.run(["chattr", "-i", "--", str(path)], check=False, capture_output=True)  # noqa: S603, S607

    def available(what: str) -> dict[str, dict[str, Any]]:
        found = api(world.cloud, world.demo, "GET", f"/volume/v3/{what}/detail").json()[what]
        return {x["id"]: x for x in found if x["volume_id"] == vid and x["status"] == "available"}

    backups: set[str] = set()
    snaps: set[str] = set()
    for occi in map(world.occi, RENDERINGS):
        r = occi.action(loc, action_id(STORAGE, "backup"))
        assert r.status_code == 200, (occi.rendering, r.text)
        [backup] = wait_for(lambda: available("backups").keys() - backups, timeout=120,
                            what=f"a new available backup of {vid} ({occi.rendering})")
        backups.add(backup)
        assert list((world.cloud.host_dir(world.cloud.volume_host) / "backups").rglob(f"*{backup}*")), \
            "no backup file on the volume host"
        world.wait_storage(loc, "online")
        r = occi.action(loc, action_id(STORAGE, "snapshot"))
        assert r.status_code == 200, (occi.rendering, r.text)
        [snap] = wait_for(lambda: available("snapshots").keys() - snaps, timeout=120,
                          what=f"a new available snapshot of {vid} ({occi.rendering})")
        snaps.add(snap)
        assert list((world.cloud.host_dir(world.cloud.volume_host) / "volumes").rglob(f"*{snap}*")), \
            "no snapshot file on the volume host"
        world.wait_storage(loc, "online")

    # resize (the 1.1 action), then OCCI 1.2's way: a partial update of occi.storage.size.
    for i, occi in enumerate(map(world.occi, RENDERINGS)):
        size = 2 + 2 * i
        r = occi.action(loc, action_id(STORAGE, "resize"), {"size": size})
        assert r.status_code == 200, (occi.rendering, r.text)
        world.wait_storage(loc, "online", **{"occi.storage.size": size})
        wait_for(lambda size=size: path.stat().st_size == size * GIB, timeout=60, what=f"{path} grown to {size} GiB")
        r = occi.update(loc, attributes={"occi.storage.size": size + 1})
        assert r.status_code in (200, 201), (occi.rendering, r.text)
        world.wait_storage(loc, "online", **{"occi.storage.size": size + 1})
        wait_for(lambda size=size: path.stat().st_size == (size + 1) * GIB, timeout=60,
                 what=f"{path} grown to {size + 1} GiB")
        # An unknown action is a 400.
        assert occi.action(loc, action_id(STORAGE, "explode")).status_code == 400, occi.rendering
    for snap in snaps:
        api(world.cloud, world.demo, "DELETE", f"/volume/v3/snapshots/{snap}")
    for backup in backups:
        api(world.cloud, world.demo, "DELETE", f"/volume/v3/backups/{backup}")


# -- network ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_network_create_query_destroy(world: World, rendering: str) -> None:
    occi = world.occi(rendering)
    cidr, title = _cidr(), f"occi-net-{secrets.token_hex(3)}"
    loc = _network(world, rendering, cidr, title)
    nid = path_id(loc)
    ent = occi.get(loc)
    assert ent.kind == NETWORK and IPNETWORK_ID in ent.mixins, ent
    assert ent.attributes["occi.network.address"] == cidr and ent.attributes["occi.network.state"] == "active", ent
    # Neutron's network and subnet (the same service layer).
    net = api(world.cloud, world.demo, "GET", f"/networking/v2.0/networks/{nid}").json()["network"]
    subnets = api(world.cloud, world.demo, "GET", "/networking/v2.0/subnets", params={"network_id": nid}).json()["subnets"]
    assert net["name"] == title and [s["cidr"] for s in subnets] == [cidr], (net, subnets)
    assert subnets[0]["enable_dhcp"] is True
    assert nid in occi.ids("/network/")
    assert occi.ids("/network/", attributes={"occi.network.address": cidr}) == {nid}
    if rendering == JSON:
        validate_json(occi.get_json(loc), "resource")
    assert occi.delete(loc).status_code in (200, 204)
    assert api(world.cloud, world.demo, "GET", f"/networking/v2.0/networks/{nid}").status_code == 404
    assert occi.status("GET", loc) == 404


# -- links and network up/down on one container ------------------------------------------------


class Box:
    """The module's container, its network and its volume (made by the first test that needs them)."""

    compute = ""
    network = ""
    cidr = ""
    storage = ""


@pytest.fixture(scope="module")
def box(world: World) -> Box:
    b = Box()
    js = world.occi(JSON)
    b.cidr = _cidr()
    b.network = _network(world, TEXT_PLAIN, b.cidr, "occi-box-net")
    b.storage = world.track(js.create(STORAGE, attributes={"occi.core.title": "occi-box-vol", "occi.storage.size": 1}))
    world.wait_storage(b.storage, "online")
    # Link network and storage on creation (text/occi: everything in headers).
    links = [InlineLink(target=b.network, target_kind=NETWORK, kind=NETWORKINTERFACE),
             InlineLink(target=b.storage, target_kind=STORAGE, kind=STORAGELINK)]
    with off_the_volume_host(world.cloud):
        b.compute = world.track(world.occi(TEXT_OCCI).create(
            COMPUTE, mixins=world.tpl(), attributes={"occi.core.title": "occi-box"}, links=links))
        uuid = path_id(b.compute)
        wait_for(lambda: js.get(b.compute).attributes.get("occi.compute.state") == "active", timeout=120,
                 what=f"{b.compute} active")
    wait_container(world.cloud, uuid, "running")
    if world.cloud.volume_host:  # the storagelinks below cross hosts: NBD from the volume host
        assert world.cloud.server_host(uuid) not in ("", world.cloud.volume_host), world.cloud.server_host(uuid)
    return b


@contextlib.contextmanager
def off_the_volume_host(cloud: CumuloCloud) -> Iterator[None]:
    """On a cluster, the servers made inside go to a dev host other than the volume host (its
    nova-compute service disabled meanwhile), so that their volumes cross hosts."""
    host = cloud.volume_host
    if not host:
        yield
        return
    cloud.osc("compute", "service", "set", "--disable", "--disable-reason", "occi: off the volume host", host,
              "nova-compute", json=False)
    try:
        yield
    finally:
        cloud.osc("compute", "service", "set", "--enable", host, "nova-compute", json=False)


def test_links_made_on_creation(world: World, box: Box) -> None:
    uuid, vid = path_id(box.compute), path_id(box.storage)
    for rendering in RENDERINGS:
        ent = world.occi(rendering).get(box.compute)
        kinds = {ln.category[0] for ln in ent.links if ln.category}
        targets = {path_id(ln.target) for ln in ent.links}
        assert {NETWORKINTERFACE, STORAGELINK} <= kinds and {path_id(box.network), vid} <= targets, ent.links
    # The NIC holds an address of the network's CIDR; the volume is mounted and writable.
    ips = [ip for addrs in container_ipv4(world.cloud, uuid).values() for ip in addrs]
    assert any(ipaddress.ip_address(ip) in ipaddress.ip_network(box.cidr) for ip in ips), (ips, box.cidr)
    mark = secrets.token_hex(8)
    done = exec_in(world.cloud, uuid, f"grep -q ' /mnt/volumes/{vid} ' /proc/mounts && echo {mark} > "
                                      f"/mnt/volumes/{vid}/mark && cat /mnt/volumes/{vid}/mark")
    assert done.returncode == 0 and done.stdout.strip() == mark, done.stderr
    assert world.cinder(vid)["status"] == "in-use"
    # An attached volume cannot go offline (the container holds it): a 409, and it stays mounted.
    assert world.occi(TEXT_PLAIN).action(box.storage, action_id(STORAGE, "offline")).status_code == 409
    assert exec_in(world.cloud, uuid, f"cat /mnt/volumes/{vid}/mark").stdout.strip() == mark
    # The links are entities of their own: the storagelink's source and target.
    sl = next(ln for ln in world.occi(JSON).get(box.compute).links if ln.category and ln.category[0] == STORAGELINK)
    link = world.occi(TEXT_PLAIN).get(sl.self_ or "")
    assert link.kind == STORAGELINK
    assert path_id(link.attributes["occi.core.source"]) == uuid and path_id(link.attributes["occi.core.target"]) == vid
    validate_json(world.occi(JSON).get_json(box.compute), "resource")


def test_link_storage_at_run_time(world: World, box: Box) -> None:
    """Link a volume to the running container and unlink it, in each rendering (the same volume)."""
    uuid = path_id(box.compute)
    js = world.occi(JSON)
    loc = world.track(js.create(STORAGE, attributes={"occi.core.title": "occi-hot-vol", "occi.storage.size": 1}))
    vid = path_id(loc)
    world.wait_storage(loc, "online")
    mnt = f"/mnt/volumes/{vid}"
    for i, occi in enumerate(map(world.occi, RENDERINGS)):
        link = occi.create(STORAGELINK, source=box.compute, target=(loc, STORAGE))
        world.wait_cinder(vid, "in-use")
        wait_for(lambda: exec_in(world.cloud, uuid, f"grep -q ' {mnt} ' /proc/mounts").returncode == 0,
                 timeout=60, what=f"{mnt} in the container ({occi.rendering})")
        # What an earlier link wrote is still there: the same volume, mounted again.
        assert all(exec_in(world.cloud, uuid, f"cat {mnt}/hot-{j}").stdout.strip() == str(j) for j in range(i))
        assert exec_in(world.cloud, uuid, f"echo {i} > {mnt}/hot-{i} && sync").returncode == 0
        assert volume_loops(vid), f"no loop device over volume {vid} (its file, or its NBD connection's)"
        ent = occi.get(link)
        assert ent.kind == STORAGELINK and path_id(ent.attributes["occi.core.target"]) == vid, ent
        assert path_id(link) in occi.ids("/storagelink/")
        # Unlink: the mount leaves the container (and its file with it), the volume is available again.
        assert occi.delete(link).status_code in (200, 204), occi.rendering
        world.wait_cinder(vid, "available")
        assert exec_in(world.cloud, uuid, f"grep -q ' {mnt} ' /proc/mounts").returncode != 0
        assert exec_in(world.cloud, uuid, f"test -e {mnt}/hot-{i}").returncode != 0
        wait_for(lambda: not volume_loops(vid), timeout=30, what=f"the loop device over volume {vid} released")
        assert occi.status("GET", link) == 404


def test_link_network_at_run_time(world: World, box: Box) -> None:
    """Link a network to the running container and unlink it, in each rendering (the same network)."""
    uuid = path_id(box.compute)
    cidr = _cidr()
    net = _network(world, JSON, cidr, "occi-hot-net")
    for occi in map(world.occi, RENDERINGS):
        before = container_ipv4(world.cloud, uuid)
        link = occi.create(NETWORKINTERFACE, source=box.compute, target=(net, NETWORK))

        def new_nic(before: dict[str, list[str]] = before) -> dict[str, list[str]] | None:
            now = container_ipv4(world.cloud, uuid)
            added = {k: v for k, v in now.items() if k not in before}
            return added if any(ipaddress.ip_address(a) in ipaddress.ip_network(cidr) for v in added.values()
                                for a in v) else None

        wait_for(new_nic, timeout=60, what=f"a NIC on {cidr} in the container ({occi.rendering})")
        assert network_ns_exists(path_id(net), world.cloud, uuid)  # plumbed on the container's host
        assert bridge_up(path_id(net), world.cloud, uuid) is True
        ent = occi.get(link)
        assert ent.kind == NETWORKINTERFACE and path_id(ent.attributes["occi.core.target"]) == path_id(net)
        assert path_id(link) in occi.ids("/networkinterface/")
        assert occi.delete(link).status_code in (200, 204), occi.rendering
        wait_for(lambda before=before: set(container_ipv4(world.cloud, uuid)) == set(before), timeout=60,
                 what=f"the hot-plugged NIC gone from the container ({occi.rendering})")
        assert api(world.cloud, world.demo, "GET", f"/networking/v2.0/ports/{path_id(link)}").status_code == 404
    # Destroyed: nothing of the network left, in Neutron or on the host.
    assert world.occi(TEXT_OCCI).delete(net).status_code in (200, 204)
    assert api(world.cloud, world.demo, "GET", f"/networking/v2.0/networks/{path_id(net)}").status_code == 404
    wait_for(lambda: not network_ns_exists(path_id(net), world.cloud, uuid), timeout=60,
             what=f"the namespace of {net} removed")


def test_network_down_and_up(world: World, box: Box) -> None:
    """down then up in each rendering: the bridge, the network's state and the traffic follow."""
    uuid, nid = path_id(box.compute), path_id(box.network)
    ports = api(world.cloud, world.demo, "GET", "/networking/v2.0/ports",
                params={"network_id": nid, "device_owner": "network:dhcp"}).json()["ports"]
    assert ports, "no DHCP port on the network"
    dhcp_ip = ports[0]["fixed_ips"][0]["ip_address"]
    wait_for(lambda: container_pings(world.cloud, uuid, dhcp_ip), timeout=30, what=f"{dhcp_ip} answers")
    assert bridge_up(nid, world.cloud, uuid) is True
    try:
        for occi in map(world.occi, RENDERINGS):
            for term, state, up in (("down", "inactive", False), ("up", "active", True)):
                r = occi.action(box.network, action_id(NETWORK, term))
                assert r.status_code == 200, (occi.rendering, term, r.text)
                wait_for(lambda up=up: bridge_up(nid, world.cloud, uuid) is up, timeout=30,
                         what=f"the bridge of {nid} {term} ({occi.rendering})")
                assert occi.get(box.network).attributes["occi.network.state"] == state
                assert api(world.cloud, world.demo, "GET", f"/networking/v2.0/networks/{nid}").json()["network"][
                    "admin_state_up"] is up
                if up:
                    wait_for(lambda: container_pings(world.cloud, uuid, dhcp_ip), timeout=30,
                             what=f"{dhcp_ip} answers again ({occi.rendering})")
                else:
                    assert not container_pings(world.cloud, uuid, dhcp_ip), "traffic crossed a network that is down"
    finally:  # the box's network up for the tests after this one, whatever happened
        world.occi(JSON).action(box.network, action_id(NETWORK, "up"))
    wait_for(lambda: bridge_up(nid, world.cloud, uuid) is True, timeout=30, what=f"the bridge of {nid} up")


def test_action_on_the_compute_collection(world: World, box: Box) -> None:
    """GFD.223: POST <collection>?action= acts on every member (here the module's one container)."""
    uuid = path_id(box.compute)
    js, plain = world.occi(JSON), world.occi(TEXT_PLAIN)
    r = plain.action("/compute/", action_id(COMPUTE, "stop"), {"method": "poweroff"})
    assert r.status_code == 200, r.text
    wait_container(world.cloud, uuid, "stopped", None)
    wait_for(lambda: js.get(box.compute).attributes["occi.compute.state"] == "inactive", timeout=60,
             what=f"{box.compute} inactive")
    r = js.action("/compute/", action_id(COMPUTE, "start"))
    assert r.status_code == 200, r.text
    wait_container(world.cloud, uuid, "running")
    wait_for(lambda: js.get(box.compute).attributes["occi.compute.state"] == "active", timeout=60,
             what=f"{box.compute} active")

"""OCCI's model and compute on a real cloud (issue 12, acceptance 1 and 4): retrieving the model
(category classes, Core and Infrastructure kinds, Infrastructure mixins, templates), filtering on
the query interface and on collections, creating, querying and destroying compute, every compute
action, contextualization (a user_data script run by a VM, an SSH key in a container's
authorized_keys), the same servers seen by the real `openstack` CLI, user-defined mixins as tags,
and a second project that can neither see nor touch the first's entities, directly or by reference.
Plain HTTP by the spec client (tests/system/_occi_client.py), in the three renderings; every JSON
answer is validated against the vendored OCCI 1.2 schema.

ONE `cumulo up` (runc and QEMU nodes, no external link). It boots one tiny VM (the user_data row:
its console shows what the script printed) and busybox containers: one per rendering for
create/query/destroy (with its SSH key and user_data, OCCI 1.2's mixins or ooi's), and one made by
the CLI that OCCI then drives through every action in each rendering (runc state after each) and
destroys.

And on the scaled-out cloud (tests/system/cluster.py, runc,qemu dev hosts): the same rows, the
servers on whichever dev host the scheduler picks (runc and QEMU checked there; a volume linked on
creation comes from the volume host, over NBD when the server is elsewhere), with two cuts for the
run's time budget (SCALED_SUBSET: create/query/destroy and the every-action walk in the JSON
rendering only).
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from _occi_client import (
    COMPUTE,
    CORE,
    IPNETWORK_ID,
    IPNETWORKINTERFACE_ID,
    JSON,
    NETWORK,
    NETWORKINTERFACE,
    OS_TPL,
    RENDERINGS,
    RESOURCE_TPL,
    SSH_KEY,
    STORAGE,
    STORAGELINK,
    TEXT_OCCI,
    TEXT_PLAIN,
    USER_DATA,
    InlineLink,
    Occi,
    action_id,
    path_id,
)
from _occi_text import Category
from _occi_util import (
    OS_TPL_SCHEME,
    RESOURCE_TPL_SCHEME,
    OcciWorld,
    Tenant,
    api,
    container_file,
    container_ipv4,
    container_status,
    exec_in,
    make_tenant,
    tenant_of,
    validate_json,
    wait_container,
)
from _runc_util import (
    kill_our_qemus,
    leftovers,
    memory_limit,
    qemu_processes_of,
    wait_for,
    wait_tiny_vm,
    write_config,
)

from cumulo.image.demo import tinyvm

if TYPE_CHECKING:
    from conftest import CumuloCloud

DEMO = "cumulo-demo"
BUILD_CACHE = os.environ.get("CUMULO_TEST_BUILD_CACHE") or str(tinyvm.default_cache())
OOI_PUBLIC_KEY = "http://schemas.openstack.org/instance/credentials#public_key"
OOI_USER_DATA = "http://schemas.openstack.org/compute/instance#user_data"
KINDS = {CORE + "entity", CORE + "resource", CORE + "link", COMPUTE, STORAGE, NETWORK, NETWORKINTERFACE, STORAGELINK}
ACTIONS = {COMPUTE: {"start", "stop", "restart", "suspend", "save"}, NETWORK: {"up", "down"},
           STORAGE: {"online", "offline", "backup", "snapshot", "resize"}}


class World(OcciWorld):
    images: dict[str, str]  # name -> id
    flavors: dict[str, str]  # name -> id
    private: str  # the demo project's network id
    made: list[str]
    vm: str  # the user_data VM's location
    vm_error: str
    marker: str

    def compute(self, occi: Occi, title: str, image: str = "busybox", mixins: tuple[str, ...] = (),
                attributes: dict[str, Any] | None = None, links: tuple[InlineLink, ...] = ()) -> str:
        links = (InlineLink(target=f"/occi/network/{self.private}", target_kind=NETWORK, kind=NETWORKINTERFACE),
                 *links)
        loc = occi.create(COMPUTE, mixins=[OS_TPL_SCHEME + self.images[image], RESOURCE_TPL_SCHEME
                                           + self.flavors["m1.tiny"], *mixins],
                          attributes={"occi.core.title": title, **(attributes or {})}, links=links)
        self.made.append(loc)
        return loc

    def state(self, loc: str) -> str:
        return str(self.occi(JSON).get(loc).attributes.get("occi.compute.state"))

    def wait_state(self, loc: str, state: str, timeout: float = 120.0) -> None:
        wait_for(lambda: self.state(loc) == state, timeout=timeout, what=f"{loc} {state} (now {self.state(loc)})")

    def console(self, uuid: str) -> str:
        r = api(self.cloud, self.demo, "POST", f"/compute/v2.1/servers/{uuid}/action",
                json={"os-getConsoleOutput": {}})
        return str(r.json().get("output", "")) if r.status_code == 200 else ""


# and on the scaled-out cloud (tests/system/cluster.py: the servers on runc,qemu dev hosts, every action a
# cast to the server's host, the saved snapshots uploaded by the host to the API process)
cumulo_configs = ("embedded", "scaled")
# The scaled variant within the run's time budget: every test, but create/query/destroy and the
# every-action walk in the JSON rendering only (one of three)
SCALED_SUBSET = "the scaled variant runs this test in the JSON rendering only (the run's time budget)"


@pytest.fixture(scope="module")
def world(cumulo_launcher: Callable[..., CumuloCloud], tmp_path_factory: pytest.TempPathFactory,
          cumulo_config: str) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("occi-compute")
    config = write_config(tmp, image_build_cache=BUILD_CACHE, qemu_stop_timeout=15, runc_suspend="freezer")
    cloud = cumulo_launcher(driver="runc,qemu", args=["--config", str(config), "--no-external"], config=cumulo_config)
    w = World(cloud, tenant_of(cloud))
    w.made = []
    w.images = {"tiny-vm": wait_tiny_vm(cloud)}
    with cloud.client(DEMO) as c:
        w.images.update({i["name"]: i["id"] for i in c.get("/image/v2/images").json()["images"]})
        w.flavors = {f["name"]: f["id"] for f in c.get("/compute/v2.1/flavors").json()["flavors"]}
        w.private = next(n["id"] for n in c.get("/networking/v2.0/networks").json()["networks"] if n["name"] == "private")
    # The user_data row's VM, made now so that it boots while the other tests run: OCCI 1.2's
    # user_data mixin in text/plain, the script base64-encoded as rOCCI clients send it (a text
    # field is one line, so a multi-line script cannot travel as is).
    w.marker, w.vm, w.vm_error = "occi-user-data-" + secrets.token_hex(4), "", ""
    try:
        script = f"#!/bin/sh\necho {w.marker} $(hostname)\n".encode()
        w.vm = w.compute(w.occi(TEXT_PLAIN), "occi-vm", image="tiny-vm", mixins=(USER_DATA,),
                         attributes={"occi.compute.userdata": base64.b64encode(script).decode()})
    except AssertionError as exc:
        w.vm_error = str(exc)
    try:
        yield w
    finally:
        for loc in w.made:
            with contextlib.suppress(Exception):
                w.occi(JSON).delete(loc)
        for loc in w.made:
            with contextlib.suppress(AssertionError):
                wait_for(lambda loc=loc: api(cloud, w.demo, "GET", f"/compute/v2.1/servers/{path_id(loc)}")
                         .status_code == 404, timeout=60, what=f"{loc} deleted")
        w.close()
        cloud.stop()
        kill_our_qemus(cloud.state_dir)
        cloud.close()


# -- the model --------------------------------------------------------------------------------


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_model(world: World, rendering: str) -> None:
    occi = world.occi(rendering)
    cats = occi.model()
    by_id: dict[str, Category] = {c.id: c for c in cats}
    # Category classes: kinds, mixins and actions, each rendered with its class.
    assert {c.cls for c in cats} == {"kind", "mixin", "action"}
    kinds = {c.id for c in cats if c.cls == "kind"}
    assert KINDS <= kinds, KINDS - kinds
    for kind, terms in ACTIONS.items():
        assert {action_id(kind, t) for t in terms} <= set(by_id[kind].actions), by_id[kind].actions
        assert all(by_id[action_id(kind, t)].cls == "action" for t in terms)
    compute = by_id[COMPUTE]
    assert compute.location and compute.location.rstrip("/").endswith("/compute")
    assert {"occi.compute.cores", "occi.compute.memory", "occi.compute.state"} <= set(compute.attributes)
    state = compute.attributes["occi.compute.state"]
    assert ("immutable" in state) if rendering != JSON else (state.get("mutable") is False), state
    # Infrastructure mixins, templates (one os_tpl per image, one resource_tpl per flavor), contextualization.
    mixins = {c.id for c in cats if c.cls == "mixin"}
    assert {IPNETWORK_ID, IPNETWORKINTERFACE_ID, OS_TPL, RESOURCE_TPL, USER_DATA, SSH_KEY, OOI_PUBLIC_KEY,
            OOI_USER_DATA} <= mixins, mixins
    for name, iid in world.images.items():
        tpl = by_id[OS_TPL_SCHEME + iid]
        assert OS_TPL in tpl.rel and name in tpl.title, tpl
    assert "vm" in by_id[OS_TPL_SCHEME + world.images["tiny-vm"]].title.lower()
    assert "container" in by_id[OS_TPL_SCHEME + world.images["busybox"]].title.lower()
    for fid in world.flavors.values():
        assert RESOURCE_TPL in by_id[RESOURCE_TPL_SCHEME + fid].rel
    # The well-known location serves the same model.
    assert {c.id for c in occi.model(path="/.well-known/org/ogf/occi/-/")} == set(by_id)
    if rendering == JSON:
        validate_json(occi.request("GET", "/-/").json(), "model")


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_query_interface_filtering(world: World, rendering: str) -> None:
    occi = world.occi(rendering)
    everything = {c.id for c in occi.model()}
    only_compute = {c.id for c in occi.model(filter_category=COMPUTE)}
    assert COMPUTE in only_compute and STORAGE not in only_compute and only_compute < everything, only_compute
    templates = occi.model(filter_category=OS_TPL, cls="mixin")
    ids = {c.id for c in templates}
    assert OS_TPL_SCHEME + world.images["busybox"] in ids and COMPUTE not in ids, ids
    assert not any(i.startswith(RESOURCE_TPL_SCHEME) for i in ids), ids


# -- compute: create, query, destroy (one container per rendering) -----------------------------


@pytest.mark.parametrize("rendering", [r if r == JSON else pytest.param(r, marks=pytest.mark.configs(
    "embedded", reason=SCALED_SUBSET)) for r in RENDERINGS])
def test_compute_create_query_destroy(world: World, rendering: str) -> None:
    occi = world.occi(rendering)
    title = f"occi-ct-{rendering.split('/')[-1].replace('+', '-')}-{secrets.token_hex(3)}"
    key = f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{secrets.token_hex(16)} {title}"
    script = f"#!/bin/sh\necho {title}\n"
    user_data = base64.b64encode(script.encode()).decode()
    if rendering == TEXT_OCCI:  # ooi's / OCCI-OS's key and user_data mixins
        mixins, attrs = (OOI_PUBLIC_KEY, OOI_USER_DATA), {"org.openstack.credentials.publickey.name": title,
                                                          "org.openstack.credentials.publickey.data": key,
                                                          "org.openstack.compute.user_data": user_data}
    else:
        mixins, attrs = (SSH_KEY, USER_DATA), {"occi.credentials.ssh.publickey": key,
                                               "occi.compute.userdata": user_data}
    # A volume linked on creation too (a storagelink inline, in this rendering; on a cluster from
    # its volume host to wherever the server runs).
    vol = occi.create(STORAGE, attributes={"occi.core.title": title + "-vol", "occi.storage.size": 1})
    world.made.append(vol)
    vid = path_id(vol)
    wait_for(lambda: occi.get(vol).attributes.get("occi.storage.state") == "online", timeout=60, what=f"{vol} online")
    loc = world.compute(occi, title, mixins=mixins, attributes=attrs,
                        links=(InlineLink(target=vol, target_kind=STORAGE, kind=STORAGELINK),))
    uuid = path_id(loc)
    world.wait_state(loc, "active")
    wait_container(world.cloud, uuid, "running")
    # The key is in the container's authorized_keys; the volume is mounted at /mnt/volumes/<id>.
    keys = container_file(world.cloud, uuid, "/root/.ssh/authorized_keys") or ""
    assert key in keys, keys
    # The user_data reaches the container's config drive, decoded (a VM runs it: test_user_data_runs_in_a_vm).
    assert container_file(world.cloud, uuid, "/mnt/config/openstack/latest/user_data") == script
    # The inline networkinterface: a NIC holding an address of demo's private subnet.
    subnets = api(world.cloud, world.demo, "GET", "/networking/v2.0/subnets",
                  params={"network_id": world.private}).json()["subnets"]
    ips = [ipaddress.ip_address(ip) for addrs in container_ipv4(world.cloud, uuid).values() for ip in addrs]
    assert any(ip in ipaddress.ip_network(s["cidr"]) for ip in ips for s in subnets), (ips, subnets)
    done = exec_in(world.cloud, uuid, f"grep -q ' /mnt/volumes/{vid} ' /proc/mounts && echo {title} > "
                                      f"/mnt/volumes/{vid}/t && cat /mnt/volumes/{vid}/t")
    assert done.returncode == 0 and done.stdout.strip() == title, done.stderr
    # Query: the entity, the kind's collection, the root collection, filters by attribute and kind.
    ent = occi.get(loc)
    assert ent.kind == COMPUTE and ent.attributes["occi.core.title"] == title
    assert OS_TPL_SCHEME + world.images["busybox"] in ent.mixins
    assert any(ln.category and ln.category[0] == NETWORKINTERFACE for ln in ent.links), ent.links
    assert action_id(COMPUTE, "stop") in ent.actions
    assert uuid in occi.ids("/compute/") and uuid in occi.ids("/")
    assert occi.ids("/compute/", attributes={"occi.core.title": title}) == {uuid}
    assert uuid in occi.ids("/", category=COMPUTE) and uuid not in occi.ids("/", category=STORAGE)
    assert uuid in occi.ids(f"/os_tpl/{world.images['busybox']}/")  # the template's mixin collection
    assert uuid in occi.ids("/compute/", accept="text/uri-list")
    assert occi.request("GET", loc, accept="text/uri-list").status_code == 400  # listings only
    # cores and memory are m1.tiny's, and so is the container's memory limit (its cgroup).
    flavor = api(world.cloud, world.demo, "GET", f"/compute/v2.1/flavors/{world.flavors['m1.tiny']}").json()["flavor"]
    assert ent.attributes["occi.compute.cores"] == flavor["vcpus"]
    assert abs(float(ent.attributes["occi.compute.memory"]) * 1024 - flavor["ram"]) < 1, (ent.attributes, flavor)
    assert memory_limit(uuid) == flavor["ram"] << 20  # the cgroup tree is the machine's, dev hosts' too
    if rendering == JSON:
        validate_json(occi.get_json(loc), "resource")
        validate_json(occi.request("GET", "/compute/").json(), "resource_collection")
    # A partial update renames the server (POST to the entity), for the OpenStack API too.
    renamed = title + "-renamed"
    r = occi.update(loc, attributes={"occi.core.title": renamed})
    assert r.status_code in (200, 201), r.text
    assert occi.get(loc).attributes["occi.core.title"] == renamed
    # The same server for the OpenStack CLI.
    listed = world.cloud.osc("server", "list", cloud=DEMO)
    assert any(s["ID"] == uuid and s["Name"] == renamed for s in listed), listed
    # Destroy.
    assert occi.delete(loc).status_code in (200, 204)
    wait_for(lambda: not leftovers(world.cloud, uuid), timeout=60, what=f"nothing of {uuid} left on the host")
    wait_for(lambda: occi.status("GET", loc) == 404, timeout=60, what=f"{loc} 404")
    assert uuid not in occi.ids("/compute/")
    # The volume outlives its server, detached, and goes with its own delete.
    wait_for(lambda: api(world.cloud, world.demo, "GET", f"/volume/v3/volumes/{vid}").json()["volume"]["status"]
             == "available", timeout=60, what=f"volume {vid} available")
    assert occi.delete(vol).status_code in (200, 204)


# -- a CLI-made server, driven through OCCI: every action ---------------------------------------


def test_cli_server_through_every_action(world: World) -> None:
    made = world.cloud.osc("server", "create", "--image", "busybox", "--flavor", "m1.tiny", "--network", "private",
                           "occi-cli-ct", cloud=DEMO)
    uuid = str(made["id"])
    loc = f"/occi/compute/{uuid}"
    world.made.append(loc)
    plain, headers, js = world.occi(TEXT_PLAIN), world.occi(TEXT_OCCI), world.occi(JSON)
    wait_for(lambda: uuid in js.ids("/compute/"), timeout=30, what=f"{uuid} in /occi/compute/")
    world.wait_state(loc, "active")
    wait_container(world.cloud, uuid, "running")
    assert plain.get(loc).attributes["occi.core.title"] == "occi-cli-ct"

    bundle = world.cloud.server_host_dir(uuid) / "runc" / uuid
    # Every action in every rendering, on the one container; the methods rotate over the renderings
    # (the scaled variant: the JSON rendering's turn only, SCALED_SUBSET).
    turns = list(enumerate(RENDERINGS))
    if world.cloud.config_name == "scaled":
        turns = [(i, r) for i, r in turns if r == JSON]
    for i, client in ((i, world.occi(r)) for i, r in turns):
        steps = [  # (action, attributes, OCCI state after, runc status after)
            ("stop", {"method": ("poweroff", "graceful", "poweroff")[i]}, "inactive", ("stopped", None)),
            ("start", {}, "active", ("running",)),
            ("suspend", {"method": "suspend"}, "suspended", ("paused",)),  # the freezer (runc_suspend)
            ("start", {}, "active", ("running",)),
        ]
        for term, attrs, state, statuses in steps:
            r = client.action(loc, action_id(COMPUTE, term), attrs)
            assert r.status_code == 200, (client.rendering, term, r.status_code, r.text)
            world.wait_state(loc, state)
            wait_container(world.cloud, uuid, *statuses)
            assert bundle.is_dir(), f"{bundle} gone after {term}"  # stopped, not deleted
            # The action links offer what the new state allows (start when stopped or suspended, stop when active).
            offered = set(client.get(loc).actions)
            assert (action_id(COMPUTE, "start") in offered) == (state != "active"), (client.rendering, term, offered)
            assert (action_id(COMPUTE, "stop") in offered) == (state == "active"), (client.rendering, term, offered)
        # restart: graceful, warm (soft reboots) or cold (hard): a new init process.
        method = ("graceful", "warm", "cold")[i]
        pid = world_runc_pid(world, uuid)
        r = client.action(loc, action_id(COMPUTE, "restart"), {"method": method})
        assert r.status_code == 200, (client.rendering, r.text)
        wait_for(lambda pid=pid: world_runc_pid(world, uuid) not in (None, pid), timeout=90,
                 what=f"{uuid} restarted ({method}, {client.rendering})")
        world.wait_state(loc, "active")
        # Refusals: an action not allowed in the state is a 409, an unknown one a 400.
        assert client.action(loc, action_id(COMPUTE, "start")).status_code == 409, client.rendering
        assert client.action(loc, action_id(COMPUTE, "explode")).status_code == 400, client.rendering
        assert container_status(world.cloud, uuid) == "running"
        # save: a snapshot, which becomes a new os_tpl (and an image in Glance).
        name = f"occi-saved-{secrets.token_hex(3)}"
        r = client.action(loc, action_id(COMPUTE, "save"), {"name": name})
        assert r.status_code == 200, (client.rendering, r.text)

        def saved(name: str = name) -> str | None:
            imgs = api(world.cloud, world.demo, "GET", "/image/v2/images", params={"name": name}).json()["images"]
            return imgs[0]["id"] if imgs and imgs[0]["status"] == "active" else None

        image_id = wait_for(saved, timeout=120, what=f"image {name} active ({client.rendering})")
        assert OS_TPL_SCHEME + image_id in {c.id for c in client.model(filter_category=OS_TPL, cls="mixin")}
        api(world.cloud, world.demo, "DELETE", f"/image/v2/images/{image_id}")
        world.wait_state(loc, "active")
    # Destroyed through OCCI, gone for the CLI too.
    assert headers.delete(loc).status_code in (200, 204)
    wait_for(lambda: not leftovers(world.cloud, uuid), timeout=60, what=f"nothing of {uuid} left on the host")
    wait_for(lambda: all(s["ID"] != uuid for s in world.cloud.osc("server", "list", cloud=DEMO)), timeout=60,
             what=f"{uuid} gone from `openstack server list`")


def world_runc_pid(world: World, uuid: str) -> int | None:
    from _runc_util import runc_state

    st = runc_state(world.cloud, uuid)
    return int(st["pid"]) if st and st.get("status") == "running" and st.get("pid") else None


# -- isolation and authentication (acceptance 4) -------------------------------------------------


@pytest.fixture(scope="module")
def other(world: World) -> Tenant:
    return make_tenant(world.cloud)


def test_another_project_sees_and_touches_nothing(world: World, other: Tenant) -> None:
    js = world.occi(JSON)
    loc = world.compute(world.occi(TEXT_PLAIN), "occi-isolated")
    uuid = path_id(loc)
    vol = js.create(STORAGE, attributes={"occi.core.title": "occi-isolated-vol", "occi.storage.size": 1})
    world.made.append(vol)
    world.wait_state(loc, "active")
    wait_container(world.cloud, uuid, "running")
    nic = next(ln.self_ for ln in js.get(loc).links if ln.category and ln.category[0] == NETWORKINTERFACE)
    net = f"/occi/network/{world.private}"
    for rendering in RENDERINGS:
        stranger = Occi(world.cloud.base_url, rendering, token=other.token)
        with stranger:
            for target in (loc, vol, net, nic or ""):
                assert stranger.status("GET", target) == 404, (rendering, target)
            assert stranger.action(loc, action_id(COMPUTE, "stop"), {"method": "poweroff"}).status_code == 404
            assert stranger.action(net, action_id(NETWORK, "down")).status_code == 404
            assert stranger.update(loc, attributes={"occi.core.title": "mine"}).status_code == 404
            assert stranger.update(loc, kind=COMPUTE, attributes={"occi.core.title": "mine"}, replace=True
                                   ).status_code in (403, 404)
            assert stranger.delete(loc).status_code == 404 and stranger.delete(vol).status_code == 404
            # Absent from every listing and filter.
            for path in ("/compute/", "/storage/", "/network/", "/networkinterface/", "/"):
                assert not {uuid, path_id(vol), world.private} & stranger.ids(path), (rendering, path)
            assert not stranger.ids("/compute/", attributes={"occi.core.title": "occi-isolated"})
            assert stranger.ids("/", category=COMPUTE) == set()
    # OCCI has no all-projects view: even the cloud's admin (another project) sees only its own.
    with Occi(world.cloud.base_url, JSON, token=world.cloud.token("cumulo")) as admin:
        assert admin.status("GET", loc) == 404 and admin.status("GET", vol) == 404
        assert not {uuid, path_id(vol)} & (admin.ids("/compute/") | admin.ids("/storage/"))
    # Nor can it reach them by reference: links from or to them, templates of its own that name them.
    with Occi(world.cloud.base_url, JSON, token=other.token) as stranger:
        own = stranger.create(STORAGE, attributes={"occi.core.title": "stranger-vol", "occi.storage.size": 1})
        for kind, source, target in ((STORAGELINK, loc, (own, STORAGE)), (STORAGELINK, loc, (vol, STORAGE)),
                                     (NETWORKINTERFACE, loc, (net, NETWORK))):
            r = stranger.request("POST", stranger.kind_location(kind),
                                 **stranger._entity_request(kind, (), {}, (), source, target))
            assert r.status_code in (400, 404), (kind, target, r.status_code, r.text)
        links = [InlineLink(target=vol, target_kind=STORAGE, kind=STORAGELINK),
                 InlineLink(target=net, target_kind=NETWORK, kind=NETWORKINTERFACE)]
        for link in links:
            r = stranger.request("POST", "/compute/", **stranger._entity_request(
                COMPUTE, [OS_TPL_SCHEME + world.images["busybox"], RESOURCE_TPL_SCHEME + world.flavors["m1.tiny"]],
                {"occi.core.title": "stranger-ct"}, [link]))
            assert r.status_code in (400, 404), (link, r.status_code, r.text)
        assert api(world.cloud, other, "GET", "/compute/v2.1/servers").json()["servers"] == []
        term = f"grab{secrets.token_hex(3)}"
        assert stranger.add_mixin("http://example.com/stranger#", term, "grab", f"/{term}/").status_code == 200
        with Occi(world.cloud.base_url, TEXT_OCCI, token=other.token) as text_stranger:
            assert text_stranger.add_members(f"/{term}/", [loc]).status_code == 404
        assert stranger.delete(own).status_code in (200, 204)
        assert stranger.delete_mixin("http://example.com/stranger#", term).status_code == 200
    # The stranger's attempts changed nothing.
    assert container_status(world.cloud, uuid) == "running"
    assert [ln.self_ for ln in js.get(loc).links if ln.category and ln.category[0] == NETWORKINTERFACE] == [nic]
    assert all(not (ln.category and ln.category[0] == STORAGELINK) for ln in js.get(loc).links)
    assert js.get(loc).attributes["occi.core.title"] == "occi-isolated"
    assert path_id(vol) in js.ids("/storage/")


def test_authentication(world: World, other: Tenant) -> None:
    base = world.cloud.base_url
    # No credentials: 401 with the Keystone challenge naming where to authenticate.
    r = httpx.get(f"{base}/occi/-/", headers={"Accept": TEXT_PLAIN})
    assert r.status_code == 401 and "OCCI/1.2" in r.headers.get("server", "")
    challenge = r.headers.get("www-authenticate", "")
    assert challenge.startswith("Keystone") and "/identity/v3" in challenge, challenge
    # HTTP Basic with the Keystone user name and password: the user's default project.
    with Occi(base, TEXT_PLAIN, basic=(other.username, other.password)) as basic:
        assert COMPUTE in {c.id for c in basic.model()}
        assert world.private not in basic.ids("/network/")
    # ... or the project named in X-Auth-Project: the demo user sees the demo project's network.
    with Occi(base, JSON, basic=(world.demo.username, world.demo.password),
              headers={"X-Auth-Project": world.demo.project}) as basic:
        assert world.private in basic.ids("/network/")
    # A wrong password: 401, a Basic challenge and never the Keystone one.
    r = httpx.get(f"{base}/occi/-/", auth=(other.username, "wrong"), headers={"Accept": TEXT_PLAIN})
    assert r.status_code == 401
    assert r.headers.get("www-authenticate", "").startswith("Basic"), r.headers.get("www-authenticate")
    # A client asking for a higher OCCI version: 501.
    r = httpx.get(f"{base}/occi/-/", headers={"X-Auth-Token": world.demo.token, "User-Agent": "x OCCI/1.3"})
    assert r.status_code == 501


# -- user-defined mixins: tags (created through the query interface, used on entities) ------------


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_user_mixin_as_a_tag(world: World, other: Tenant, rendering: str) -> None:
    occi = world.occi(rendering)
    term, scheme = f"tag{secrets.token_hex(3)}", "http://example.com/occi/tags#"
    tag, where = scheme + term, f"/tags/{term}/"
    title = f"occi-tagged-{term}"
    vol = occi.create(STORAGE, attributes={"occi.core.title": title, "occi.storage.size": 1})
    world.made.append(vol)
    r = occi.add_mixin(scheme, term, "a tag", where)
    assert r.status_code == 200, r.text
    assert tag in {c.id for c in occi.model(filter_category=tag, cls="mixin")}
    r = occi.add_members(where, [vol])
    assert r.status_code == 200, r.text
    assert occi.ids(where) == {path_id(vol)}
    assert occi.ids(where, attributes={"occi.core.title": title}) == {path_id(vol)}  # filtering there too
    assert occi.ids(where, attributes={"occi.core.title": title + "-not"}) == set()
    assert tag in occi.get(vol).mixins
    assert path_id(vol) in occi.ids("/", category=tag, cls="mixin")
    # Another project neither sees the mixin nor its collection.
    with Occi(world.cloud.base_url, rendering, token=other.token) as stranger:
        assert tag not in {c.id for c in stranger.model()}
        assert stranger.request("GET", where).status_code == 404
    r = occi.delete_mixin(scheme, term)
    assert r.status_code == 200, r.text
    assert tag not in occi.get(vol).mixins and occi.request("GET", where).status_code == 404


# -- contextualization in a VM (made by the fixture at the start: it boots, under TCG, while the
#    container tests run; checked last) --------------------------------------------------------


def test_user_data_runs_in_a_vm(world: World) -> None:
    assert world.vm, f"the VM's create failed: {world.vm_error}"
    uuid = path_id(world.vm)
    wait_for(lambda: world.marker in world.console(uuid), timeout=240, interval=1.0,
             what=f"the user_data marker on the console of {uuid}")
    assert qemu_processes_of(uuid), "no QEMU process for the VM"
    ent = world.occi(JSON).get(world.vm)
    assert ent.attributes["occi.compute.state"] == "active", ent
    assert world.occi(JSON).delete(world.vm).status_code in (200, 204)
    wait_for(lambda: not qemu_processes_of(uuid), timeout=60, what=f"the QEMU of {uuid} gone")

"""Run Tempest (release 47, in its own venv) against a fresh `cumulo up` with its defaults.

    .venv/bin/python scripts/tempest/run.py [--regex REGEX] [--concurrency 2] [--workspace DIR] [--validation] [--vm] [--fake-hosts N]
        [--database URL] [--transport URL]

What it does, in order:
  1. makes the Tempest venv ($HOME/tempest-venv, `pip install tempest==47.0.0`) if it is missing;
  2. starts `cumulo up` (default drivers: runc containers + QEMU VMs) in a temp state dir on a free
     loopback port, its external network on --external-cidr (172.24.44.0/24: not the default
     172.24.4.0/24 another cloud on this host may hold) and the demo's private network on a /24;
     --fake-hosts N (the migration run) makes it `--driver fake --fake-hosts N` (min_compute_nodes
     N+1: servers move between fake hosts), --database/--transport put it on PostgreSQL/RabbitMQ;
  3. as the cloud's admin (from its clouds.yaml): uploads a second container image (Tempest wants two
     distinct images), raises the admin project's quotas, shares the demo's `private` network (every
     Tempest project boots on it, routed to `public`: fixed_network_name, as DevStack's), makes the
     pre-provisioned accounts;
  4. writes tempest.conf from shared/tempest/tempest.conf.tmpl's settings (pre-provisioned accounts,
     Neutron on, interface attach on, Cinder on with the volume features built) into the workspace; with --validation, Tempest logs in to its
     servers over SSH on a floating IP (run_validation; image_ref is ssh_image.py's image) and makes
     a project with its own routed network per test class (dynamic credentials), as DevStack's gate;
  5. runs `tempest run --regex ...` less EXCLUDED (Cinder features not built that Tempest has no
     switch for: groups, QoS specs, encryption types, backup record import), prints the totals and keeps the subunit stream and the log in
     the workspace (default ./tempest-ws, git-ignored);
  6. deletes what the run left (servers of every project), stops the cloud and removes its state.
docs/conformance.md records the command, the config, the counts and every skip with its reason.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import openstack
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPEST_VENV = Path(os.environ.get("TEMPEST_VENV", Path.home() / "tempest-venv"))
TEMPEST_VERSION = "47.0.0"
DEFAULT_EXTERNAL_CIDR = "172.24.44.0/24"
DEFAULT_REGEX = r"^tempest\.api\.(identity\.v3|compute|image\.v2|network|volume)\."

CONF = """\
[DEFAULT]
log_dir = {ws}/logs
log_file = tempest.log
debug = true

[oslo_concurrency]
lock_path = {ws}/tempest_lock

[auth]
# Pre-provisioned accounts (made by this script); with --validation, dynamic credentials (DevStack's gate).
{credentials}
test_accounts_file = {ws}/etc/accounts.yaml
default_credentials_domain_name = Default
admin_username = {admin_user}
admin_password = {admin_password}
admin_project_name = {admin_project}
admin_domain_name = Default

[identity]
uri_v3 = {auth_url}/v3
auth_version = v3
region = RegionOne
v3_endpoint_type = public
catalog_type = identity
# The cloud runs with the same security compliance settings (Cloud: CUMULO_IDENTITY_*).
user_lockout_failure_attempts = 2
user_lockout_duration = 5
user_unique_last_password_count = 2

[identity-feature-enabled]
api_v2 = false
api_v3 = true
trust = false
access_rules = false
security_compliance = true
application_credentials = false
project_tags = false

[service_available]
nova = true
glance = true
cinder = true
neutron = true
swift = false
horizon = false

[compute]
catalog_type = compute
endpoint_type = publicURL
region = RegionOne
image_ref = {image}
image_ref_alt = {image_alt}
flavor_ref = {flavor}
flavor_ref_alt = {flavor_alt}
build_timeout = 300
build_interval = 1
min_microversion = 2.1
max_microversion = {max_mv}
# 1 on the default run's one host (the multi-host migration tests skip); N+1 with --fake-hosts N
min_compute_nodes = {min_compute_nodes}
# As DevStack: servers boot on `private` (the demo's network, which this script shares with every
# project), routed to `public` by router1, so that floating IPs associate.
fixed_network_name = private

[compute-feature-enabled]
resize = true
pause = true
suspend = true
shelve = false
rescue = false
stable_rescue = false
snapshot = true
console_output = true
change_password = false
interface_attach = true
# built in issue 14 (cold and live migration, evacuate); with one host only their negative tests run
live_migration = true
cold_migration = true
# QEMU's NBD drive-mirror; the fake driver moves its record either way
block_migration_for_live_migration = true
# a volume-booted server may live-migrate without block migration (QEMU), but Tempest's servers here are
# busybox containers, which cannot boot from a volume (409), in the --fake-hosts run too
volume_backed_live_migration = false
metadata_service = true
config_drive = true
personality = false
vnc_console = false
spice_console = false
serial_console = false
attach_encrypted_volume = false
swap_volume = false
# Nova's multiattach (2.60) over volumes of a multiattach type (the runner makes `multiattach`)
volume_multiattach = true
disk_config = true
enable_instance_password = true

[image]
catalog_type = image
endpoint_type = publicURL
build_timeout = 300
build_interval = 1
container_formats = bare,docker
disk_formats = qcow2,raw

[image-feature-enabled]
api_v2 = true
import_image = true

[volume]
# Cinder v3 at /volume (catalog type block-storage), microversions 3.0-3.70; one backend (sparse
# raw files), backups as compressed qcow2 files in a directory (posix is the nearest driver).
catalog_type = block-storage
endpoint_type = publicURL
build_timeout = 300
build_interval = 1
min_microversion = 3.0
max_microversion = {volume_max_mv}
backup_driver = posix
backend_names = cumulo
storage_protocol = file
vendor_name = Cumulo
disk_format = raw,qcow2
volume_size = 1
volume_size_extend = 1
# a type whose extra spec makes its volumes multiattach (the runner makes it)
volume_type_multiattach = multiattach

[volume-feature-enabled]
backup = true
snapshot = true
clone = true
# online extend: the volume worker grows the file, Nova's volume-extended event tells the driver (3.42)
extend_attached_volume = true
extend_volume_with_snapshot = true
enable_volume_image_dep_tests = true
# Not built: manage/unmanage of storage the cloud did not make, replication, several backends,
# encrypted volumes (docs/conformance.md says why).
manage_snapshot = false
manage_volume = false
multi_backend = false
replication = false
extend_attached_encrypted_volume = false
# GET /volume/v3/extensions lists the Cinder extensions served (Tempest looks for Hosts)
api_extensions = all

[network]
catalog_type = network
project_network_cidr = 10.100.0.0/16
project_network_mask_bits = 28
# the shared external network `cumulo up` makes at first start
public_network_id = {public_network_id}
floating_network_name = public

[network-feature-enabled]
# The extensions GET /networking/v2.0/extensions lists (cumulo.network.extensions), not "all":
# Tempest's extension test expects every alias of its own list (agents, schedulers, DVR) otherwise.
api_extensions = {network_extensions}
ipv6 = true
ipv6_subnet_attributes = true

[validation]
{validation}

[service-clients]
http_timeout = 60
"""


def check_external_cidr(cidr: str) -> None:
    """Refuse a CIDR that an address of the host already sits in (another cloud's host link)."""
    net = ipaddress.ip_network(cidr, strict=True)
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, check=True, text=True).stdout  # noqa: S607
    for link in json.loads(out):
        for addr in link.get("addr_info", []):
            if ipaddress.ip_address(addr["local"]) in net:
                raise SystemExit(f"{cidr} is in use on this host ({link['ifname']} {addr['local']}): "
                                 "pass another --external-cidr")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_tempest() -> Path:
    tempest = TEMPEST_VENV / "bin" / "tempest"
    if not tempest.exists():
        subprocess.run(["python3", "-m", "venv", str(TEMPEST_VENV)], check=True)  # noqa: S603,S607
        subprocess.run([str(TEMPEST_VENV / "bin" / "pip"), "install", "-q", f"tempest=={TEMPEST_VERSION}"],  # noqa: S603
                       check=True)
    return tempest


class Cloud:
    def __init__(self, state: Path, port: int, external_cidr: str, extra: tuple[str, ...] = ()) -> None:
        self.state, self.port = state, port
        self.log = open(state.parent / "cumulo.log", "wb")  # noqa: SIM115
        # This checkout's code (PYTHONPATH), whichever venv runs the script: a second worktree can
        # run Tempest on a fixed commit with the main checkout's venv.
        # No metrics endpoint (CUMULO_METRICS_PORT=0): Tempest does not scrape, and 9180 may be taken.
        # Keystone's security compliance on (off by default), as [identity] in tempest.conf says.
        # Its own external CIDR: the host link must not clash with another cloud's on this host.
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"),
               "CUMULO_METRICS_PORT": os.environ.get("CUMULO_METRICS_PORT", "0"),
               "CUMULO_IDENTITY_LOCKOUT_FAILURE_ATTEMPTS": "2", "CUMULO_IDENTITY_LOCKOUT_DURATION": "5",
               "CUMULO_IDENTITY_UNIQUE_LAST_PASSWORD_COUNT": "2", "CUMULO_EXTERNAL_CIDR": external_cidr,
               "CUMULO_PRIVATE_CIDR": "10.0.0.0/24"}
        self.proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "cumulo.cli.main", "up", "--state-dir", str(state), "--port", str(port), *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while b"Cumulo is ready" not in (state.parent / "cumulo.log").read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"cumulo up did not start; see {state.parent / 'cumulo.log'}")
            time.sleep(0.2)
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(state / "clouds.yaml")
        self.auth = yaml.safe_load((state / "clouds.yaml").read_text())["clouds"]["cumulo"]["auth"]
        self.admin = openstack.connect(cloud="cumulo")

    def stop(self) -> None:
        try:
            for server in self.admin.compute.servers(all_projects=True):
                try:
                    self.admin.compute.delete_server(server, force=True)
                except openstack.exceptions.ConflictException:  # already being deleted (a test's cleanup)
                    pass
            deadline = time.monotonic() + 120
            while list(self.admin.compute.servers(all_projects=True)) and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            remove_data_plane(self.state)


def remove_data_plane(state: Path) -> None:
    """The network data plane the cloud registered on the host (namespaces, dnsmasq, host link):
    `cumulo up` leaves it serving when it stops, a thrown-away cloud must not."""
    sys.path.insert(0, str(ROOT / "src"))
    from cumulo.network.agent.plumbing import remove_registered

    asyncio.run(remove_registered(str(state.resolve())))


ACCOUNT_SETS = 12  # per set, one project: a member+reader user, a reader-only user and a manager user
# (Tempest takes a class's project_reader and project_manager from its primary's project)
ADMIN_ACCOUNTS = 6
SERVICE_ACCOUNTS = 4  # admin + service: a class's admin may take one too (Tempest picks any admin)


def make_accounts(conn: openstack.connection.Connection, password: str) -> list[dict[str, object]]:
    """Tempest's pre-provisioned accounts: each test class locks distinct entries for its personas."""
    roles = {r.name: r for r in conn.identity.roles()}
    if "manager" not in roles:  # Keystone's project-manager persona (Tempest's project_manager credentials)
        roles["manager"] = conn.identity.create_role(name="manager")
    if "service" not in roles:  # what services (Neutron, Cinder) hold: os-server-external-events' policy
        roles["service"] = conn.identity.create_role(name="service")
    accounts: list[dict[str, object]] = []

    def account(user: str, project: str, wanted: list[str]) -> None:
        proj = conn.identity.find_project(project) or conn.identity.create_project(name=project, domain_id="default")
        usr = conn.identity.find_user(user) or conn.identity.create_user(
            name=user, password=password, domain_id="default", default_project_id=proj.id)
        for role in wanted:
            conn.identity.assign_project_role_to_user(proj, usr, roles[role])
        accounts.append({"username": user, "project_name": project, "password": password,
                         "domain_name": "Default", "roles": wanted})

    # Every member user first: Tempest gives a class's `alt` the first free non-admin entry of the
    # file, whatever its roles, and it must be a member of another project (a reader-only or manager
    # user of the primary's own project makes the cross-project tests fail, and takes the reader a
    # class's project_reader needs).
    for i in range(1, ACCOUNT_SETS + 1):
        account(f"tempest-user{i}", f"tempest-project{i}", ["member", "reader"])
    for i in range(1, ACCOUNT_SETS + 1):
        account(f"tempest-reader{i}", f"tempest-project{i}", ["reader"])
        account(f"tempest-manager{i}", f"tempest-project{i}", ["manager"])
    for i in range(1, ADMIN_ACCOUNTS + 1):
        account(f"tempest-admin{i}", f"tempest-admin-project{i}", ["admin", "member", "reader"])
    for i in range(1, SERVICE_ACCOUNTS + 1):  # ServerExternalEventsTest's service_user: admin + service
        account(f"tempest-service{i}", f"tempest-service-project{i}", ["admin", "service"])
    return accounts


VALIDATION = """\
run_validation = true
connect_method = floating
auth_method = keypair
image_ssh_user = root
network_for_ssh = private
ip_version_for_ssh = 4
security_group = true
security_group_rules = true
ssh_timeout = 180"""


def ssh_image(conn: openstack.connection.Connection, tmp: Path, name: str) -> str:
    """Build and upload an image Tempest's validation logs in to (ssh_image.py); its id. Each build
    has its own host key, so two builds are two distinct images (image_ref, image_ref_alt)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import ssh_image as builder

    path = builder.build(tmp / f"{name}.tar")
    image = conn.image.create_image(name=name, data=path.read_bytes(), disk_format="raw",
                                    container_format="docker", visibility="public", hypervisor_type="container")
    deadline = time.monotonic() + 120
    while conn.image.get_image(image.id).status != "active":
        if time.monotonic() > deadline:
            raise SystemExit(f"the {name} image never became active")
        time.sleep(0.5)
    return str(image.id)


def vm_images(conn: openstack.connection.Connection) -> tuple[str, str]:
    """Two copies of the tiny-vm demo image (its empty qcow2 root disk, its kernel, initramfs and
    command line) as q35 machines, which take hot-plugged volumes (a microvm does not): Tempest's
    image_ref and image_ref_alt for the VM pass (--vm). Their ids."""
    deadline = time.monotonic() + 300
    while True:  # built in the background at first start (the kernel .deb is cached per host)
        tiny = conn.image.find_image("tiny-vm")
        if tiny is not None and tiny.status == "active":
            break
        if time.monotonic() > deadline or (tiny is not None and tiny.status == "killed"):
            raise SystemExit("the tiny-vm demo image never became active")
        time.sleep(1)
    data = conn.image.download_image(tiny.id).content
    # (openstacksdk holds these as the image's own attributes, not in `properties`)
    props = {k: getattr(tiny, k) for k in ("kernel_id", "ramdisk_id", "os_command_line", "os_distro")
             if getattr(tiny, k, None)}
    if "kernel_id" not in props:
        raise SystemExit("the tiny-vm image names no kernel_id")
    ids = []
    for name in ("tiny-vm-q35", "tiny-vm-q35-alt"):
        image = conn.image.create_image(name=name, data=data, disk_format=tiny.disk_format,
                                        container_format=tiny.container_format, visibility="public",
                                        hypervisor_type="qemu", hw_machine_type="q35", **props)
        while conn.image.get_image(image.id).status != "active":
            if time.monotonic() > deadline:
                raise SystemExit(f"the {name} image never became active")
            time.sleep(0.5)
        ids.append(str(image.id))
    return ids[0], ids[1]


def prepare(cloud: Cloud) -> dict[str, str]:
    conn = cloud.admin
    deadline = time.monotonic() + 120
    while True:  # the demo images are registered at start; tiny-vm turns active once built
        images = {i.name: i for i in conn.image.images()}
        if "busybox" in images and images["busybox"].status == "active":
            break
        if time.monotonic() > deadline:
            raise SystemExit("the busybox demo image never became active")
        time.sleep(0.5)
    busybox = images["busybox"]
    alt = images.get("busybox-alt")
    if alt is None:
        data = conn.image.download_image(busybox).content
        alt = conn.image.create_image(name="busybox-alt", data=data, disk_format=busybox.disk_format,
                                      container_format=busybox.container_format, visibility="public",
                                      hypervisor_type="container")
    flavors = {f.name: f for f in conn.compute.flavors()}
    project = conn.identity.find_project(cloud.auth["project_name"])
    conn.compute.update_quota_set(project.id, instances=-1, cores=-1, ram=-1)  # type: ignore[arg-type]
    max_mv = conn.compute.get("/").json()["version"]["version"]  # the v2.1 document
    volume_mv = conn.session.get(f"http://127.0.0.1:{cloud.port}/volume/v3/").json()["versions"][0]["version"]
    public = conn.network.find_network("public")
    private = conn.network.find_network("private")
    if public is None or private is None:
        raise SystemExit("cumulo up made no public/private networks at first start")
    # DevStack's fixed_network_name: every Tempest project boots its servers on `private` (routed to
    # public by the demo's router1, so floating IPs associate), which it can see once it is shared.
    conn.network.update_network(private, shared=True)
    if not any(t.name == "multiattach" for t in conn.block_storage.types()):
        conn.block_storage.create_type(name="multiattach", extra_specs={"multiattach": "<is> True"})
    return {"image": busybox.id, "image_alt": alt.id, "flavor": flavors["m1.nano"].id,
            "public_network_id": public.id,
            "flavor_alt": flavors["m1.micro"].id if "m1.micro" in flavors else flavors["m1.tiny"].id,
            "max_mv": max_mv, "volume_max_mv": volume_mv}


# Tests of Cinder features Cumulo does not build, for which Tempest has no [volume-feature-enabled]
# switch: excluded by name (docs/conformance.md gives each reason). Everything else runs.
EXCLUDED = {
    # generic volume groups, group types and group snapshots (consistency groups): not built
    r"^tempest\.api\.volume\.admin\.test_group": "volume groups, group types, group snapshots",
    # QoS specs: no I/O limits on volumes (the QEMU and runc attach have none to apply)
    r"^tempest\.api\.volume\.admin\.test_qos\.": "QoS specs",
    # volume encryption (encryption types of a volume type): no encrypted volumes
    r"^tempest\.api\.volume\.admin\.test_volume_types\.VolumeTypesTest\.test_volume_type_encryption_":
        "encryption types",
    # os-assisted-volume-snapshots: Nova's callback for Cinder's remote-file drivers (qcow2 chains on
    # NFS/GlusterFS, snapshotted by libvirt); the volumes here are raw files the volume service snapshots
    r"^tempest\.api\.compute\.admin\.test_assisted_volume_snapshots\.": "assisted volume snapshots",
    # backup record export/import (Cinder's recovery from a lost database): not built
    r"^tempest\.api\.volume\.admin\.test_volumes_backup\.VolumesBackupsAdminTest\.test_volume_backup_export_import":
        "backup record export/import",
}


# Tests that need a server booted from a disk image: a container's root is its image's layers, and
# runc refuses a root volume (409). They run in the VM pass (--vm), whose servers are q35 VMs.
CONTAINER_EXCLUDED = {
    r"^tempest\.api\.compute\.servers\.test_create_server\.ServersTestBootFromVolume\.": "boot from volume",
    # (Tempest turns this one's failure into a skip, "unstable": it boots a volume-backed server)
    r"^tempest\.api\.compute\.servers\.test_server_actions\.ServerActionsTestOtherA\."
    r"test_resize_volume_backed_server_confirm": "resize of a volume-backed server",
    r"^tempest\.api\.compute\.volumes\.test_attach_volume\.AttachVolumeMultiAttachTest\."
    r"test_(boot_from_multiattach_volume|snapshot_volume_backed_multiattach)\[": "boot from a multiattach volume",
}


def command(tempest: Path, args: argparse.Namespace) -> list[str]:
    skip = EXCLUDED if args.vm else {**EXCLUDED, **CONTAINER_EXCLUDED}
    excluded = ["--exclude-regex", "|".join(f"({r})" for r in skip)]
    if args.list:
        return [str(tempest), "run", "--list-tests", "--regex", args.regex, *excluded]
    return [str(tempest), "run", "--concurrency", str(args.concurrency), "--regex", args.regex, *excluded]


def _network_extensions() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from cumulo.network import extensions

    return ",".join(e["alias"] for e in extensions.listed())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regex", default=DEFAULT_REGEX)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--workspace", type=Path, default=ROOT / "tempest-ws")
    ap.add_argument("--list", action="store_true", help="only list the tests the regex selects")
    ap.add_argument("--vm", action="store_true",
                    help="boot Tempest's servers as q35 VMs of the tiny-vm image (image_ref, flavor m1.tiny/m1.small) "
                         "instead of busybox containers: the boot-from-volume tests need a disk image")
    ap.add_argument("--validation", action="store_true",
                    help="log in to servers over SSH (Tempest's run_validation; the interface attach tests need "
                         "it): image_ref becomes an image with sshd (ssh_image.py), reached on a floating IP")
    ap.add_argument("--external-cidr", default=DEFAULT_EXTERNAL_CIDR,
                    help="the cloud's external network (its host link carries .1): not 172.24.4.0/24, which a "
                         "developer's own `cumulo up` takes")
    ap.add_argument("--fake-hosts", type=int, default=0, metavar="N",
                    help="the migration run: the local host's driver is fake and N fake hosts join it "
                         "(cumulo up --driver fake --fake-hosts N), min_compute_nodes N+1, so that Tempest's "
                         "cold/live migration and multi-node tests move servers between hosts")
    ap.add_argument("--database", default=None,
                    help="the cloud's database URL (cumulo up --database; default SQLite in its state dir), "
                         "e.g. an empty PostgreSQL database")
    ap.add_argument("--transport", default=None,
                    help="the cloud's bus (cumulo up --transport; default inproc), e.g. amqp://user:pw@host:port/vhost")
    args = ap.parse_args()
    if args.fake_hosts and (args.vm or args.validation):
        ap.error("--fake-hosts runs fake servers: not with --vm or --validation")
    tempest = ensure_tempest()
    ws = args.workspace.resolve()
    if not (ws / ".stestr.conf").exists():
        import hashlib  # Tempest keeps workspaces by name in ~/.tempest: one name per path

        name = "cumulo-" + hashlib.sha256(str(ws).encode()).hexdigest()[:8]
        subprocess.run([str(tempest), "workspace", "remove", "--name", name], capture_output=True)  # noqa: S603
        subprocess.run([str(tempest), "init", "--name", name, str(ws)], check=True)  # noqa: S603
    tmp = Path(tempfile.mkdtemp(prefix="cumulo-tempest-"))
    (tmp / "state").mkdir(mode=0o700)
    try:
        check_external_cidr(args.external_cidr)
        extra: tuple[str, ...] = ("--driver", "fake", "--fake-hosts", str(args.fake_hosts)) if args.fake_hosts else ()
        extra += ("--database", args.database) if args.database else ()
        extra += ("--transport", args.transport) if args.transport else ()
        cloud = Cloud(tmp / "state", free_port(), args.external_cidr, extra)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        values = prepare(cloud)
        values["validation"] = "run_validation = false"
        values["min_compute_nodes"] = str(args.fake_hosts + 1)
        values["credentials"] = "use_dynamic_credentials = false\ncreate_isolated_networks = false"
        if args.vm:
            values["image"], values["image_alt"] = vm_images(cloud.admin)
            flavors = {f.name: f.id for f in cloud.admin.compute.flavors()}
            values["flavor"], values["flavor_alt"] = flavors["m1.tiny"], flavors["m1.small"]
        if args.validation:
            values["image"] = ssh_image(cloud.admin, tmp, "tempest-ssh")
            values["image_alt"] = ssh_image(cloud.admin, tmp, "tempest-ssh-alt")  # rebuilds log in too
            values["validation"] = VALIDATION
            # As DevStack's gate: a project per test class, with its own network routed to public.
            values["credentials"] = "use_dynamic_credentials = true\ncreate_isolated_networks = true"
        accounts = make_accounts(cloud.admin, cloud.auth["password"])
        (ws / "etc" / "accounts.yaml").write_text(yaml.safe_dump(accounts, sort_keys=False))
        conf = CONF.format(ws=ws, auth_url=f"http://127.0.0.1:{cloud.port}/identity",
                           admin_user=cloud.auth["username"], admin_password=cloud.auth["password"],
                           admin_project=cloud.auth["project_name"],
                           network_extensions=_network_extensions(), **values)
        (ws / "etc" / "tempest.conf").write_text(conf)
        cmd = command(tempest, args)
        print("+", " ".join(cmd), f"(in {ws})", flush=True)
        rc = subprocess.run(cmd, cwd=ws).returncode  # noqa: S603
        shutil.copy(tmp / "cumulo.log", ws / "logs" / "cumulo.log") if (ws / "logs").exists() else None
        return rc
    finally:
        try:
            cloud.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

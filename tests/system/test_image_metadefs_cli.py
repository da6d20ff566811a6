"""Glance's metadata definitions catalog through the real `openstack image metadef ...` commands
(python-openstackclient over openstacksdk) against `cumulo up`: an admin builds a namespace with
a property, an object and a resource-type association; another project's member reads the public
namespace but may not write, and loses sight of it once it is private; protection blocks delete."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the harness lives in tests/system/conftest.py
    from conftest import CumuloCloud

pytestmark = pytest.mark.system

cumulo_options = {"fake_hosts": 0}
cumulo_configs = ("embedded", "scaled")  # and on the scaled-out cloud (tests/system/cluster.py)

ADMIN, DEMO = "cumulo", "cumulo-demo"


def _fails(cumulo: CumuloCloud, *args: str, cloud: str = ADMIN) -> str:
    done = cumulo.osc_run(*args, cloud=cloud)
    assert done.returncode != 0, f"`openstack {' '.join(args)}` unexpectedly succeeded:\n{done.stdout}"
    return done.stderr


def test_metadef_catalog_through_the_cli(cumulo: CumuloCloud) -> None:
    ns = f"Cumulo::CLI::{secrets.token_hex(3)}"
    types = cumulo.osc("image", "metadef", "resource", "type", "list")
    assert "OS::Glance::Image" in {t["Name"] for t in types}

    created = cumulo.osc("image", "metadef", "namespace", "create", "--public", "--protected",
                         "--display-name", "CLI test", "--description", "made by the system test", ns)
    assert created["namespace"] == ns and created["visibility"] == "public" and created["protected"] is True
    try:
        assert ns in {n["namespace"] for n in cumulo.osc("image", "metadef", "namespace", "list")}

        prop = cumulo.osc("image", "metadef", "property", "create", "--name", "hypervisor_type", "--title",
                          "Hypervisor", "--type", "string", "--schema", json.dumps({"enum": ["qemu", "kvm"]}), ns)
        assert prop["name"] == "hypervisor_type" and prop["enum"] == ["qemu", "kvm"]
        shown = cumulo.osc("image", "metadef", "property", "show", ns, "hypervisor_type")
        assert shown["title"] == "Hypervisor" and shown["type"] == "string"

        obj = cumulo.osc("image", "metadef", "object", "create", "--namespace", ns, "CPU Limits")
        assert obj["name"] == "CPU Limits"
        assert "CPU Limits" in {o["name"] for o in cumulo.osc("image", "metadef", "object", "list", ns)}

        cumulo.osc("image", "metadef", "resource", "type", "association", "create", ns, "OS::Nova::Flavor")
        links = cumulo.osc("image", "metadef", "resource", "type", "association", "list", ns)
        assert "OS::Nova::Flavor" in {a["Name"] for a in links}

        # Another project: reads the public namespace, may not write, and never deletes.
        seen = cumulo.osc("image", "metadef", "namespace", "show", ns, cloud=DEMO)
        assert seen["namespace"] == ns
        refused = _fails(cumulo, "image", "metadef", "namespace", "create", "Cumulo::Demo", cloud=DEMO)
        assert "403" in refused or "Forbidden" in refused, refused

        _fails(cumulo, "image", "metadef", "namespace", "delete", ns)  # protected
        assert ns in {n["namespace"] for n in cumulo.osc("image", "metadef", "namespace", "list")}

        cumulo.osc("image", "metadef", "namespace", "set", "--private", "--unprotected", ns, json=False)
        after = cumulo.osc("image", "metadef", "namespace", "show", ns)
        assert after["visibility"] == "private" and after["protected"] is False
        # The SDK's PUT carries only what changed (and the name); the reference says such a PUT resets
        # display_name and description to null, and Glance then leaves them out of the body.
        assert "display_name" not in after and "description" not in after
        _fails(cumulo, "image", "metadef", "namespace", "show", ns, cloud=DEMO)
        assert ns not in {n["namespace"] for n in cumulo.osc("image", "metadef", "namespace", "list", cloud=DEMO)}
    finally:
        cumulo.osc_run("image", "metadef", "namespace", "set", "--unprotected", ns)
        cumulo.osc_run("image", "metadef", "namespace", "delete", ns)
    _fails(cumulo, "image", "metadef", "namespace", "show", ns)


def test_glance_direct_import_through_the_cli(cumulo: CumuloCloud, tmp_path: object) -> None:
    """`openstack image create --import` stages and imports (glance-direct); the admin sees the task."""
    from pathlib import Path

    data = secrets.token_bytes(64 * 1024)
    src = Path(str(tmp_path)) / "blob.raw"
    src.write_bytes(data)
    info = cumulo.osc("image", "import", "info")
    assert "glance-direct" in json.dumps(info)
    name = f"imported-{secrets.token_hex(3)}"
    image = cumulo.osc("image", "create", "--import", "--file", str(src), "--disk-format", "raw",
                       "--container-format", "bare", name, cloud=DEMO)
    try:
        shown = cumulo.osc("image", "show", image["id"], cloud=DEMO)
        assert shown["status"] == "active" and shown["size"] == len(data)
        out = Path(str(tmp_path)) / "back.raw"
        cumulo.osc("image", "save", "--file", str(out), image["id"], cloud=DEMO, json=False)
        assert out.read_bytes() == data
        tasks = cumulo.osc("image", "task", "list")
        assert any(t["Type"] == "api_image_import" and t["Status"] == "success" for t in tasks), tasks
    finally:
        cumulo.osc_run("image", "delete", image["id"], cloud=DEMO)


def test_unsafe_qcow2_is_refused_at_upload_and_makes_no_volume(cumulo: CumuloCloud, tmp_path: object) -> None:
    """A qcow2 whose backing file is /etc/shadow (made by qemu-img) is refused while it uploads, by
    `image create --file`, `image create --import` and `image stage` alike (Glance's 415 naming the
    backing file). openstacksdk deletes the image of a failed create; a staged one stays queued, so
    `volume create --image` of it is Cinder's 400."""
    import subprocess
    from pathlib import Path

    backed = Path(str(tmp_path)) / "backed.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", "/etc/shadow", "-F", "raw",  # noqa: S603, S607
                    str(backed), "64M"], check=True, capture_output=True, timeout=60)
    name = f"shadow-{secrets.token_hex(3)}"
    for how in ([], ["--import"]):
        done = cumulo.osc_run("image", "create", *how, "--file", str(backed), "--disk-format", "qcow2",
                              "--container-format", "bare", name, cloud=DEMO)
        assert done.returncode != 0, done.stdout
        assert "415" in done.stderr and "backing file" in done.stderr, done.stderr
        assert cumulo.osc("image", "list", "--name", name, cloud=DEMO) == []  # the SDK dropped it
    # A queued image with no data (the CLI would upload its stdin, which is not a terminal here).
    with cumulo.client(DEMO) as http:
        made = http.post("/image/v2/images", json={"name": name, "disk_format": "qcow2", "container_format": "bare"})
        assert made.status_code == 201, made.text
        image = made.json()
    try:
        done = cumulo.osc_run("image", "stage", "--file", str(backed), image["id"], cloud=DEMO)
        assert done.returncode != 0 and "backing file" in done.stderr, (done.stdout, done.stderr)
        shown = cumulo.osc("image", "show", image["id"], cloud=DEMO)
        assert shown["status"] == "queued" and not shown.get("size"), shown
        done = cumulo.osc_run("volume", "create", "--size", "1", "--image", image["id"], "from-shadow", cloud=DEMO)
        assert done.returncode != 0 and "is not active" in done.stderr, (done.stdout, done.stderr)
        assert "from-shadow" not in {v["Name"] for v in cumulo.osc("volume", "list", cloud=DEMO)}
    finally:
        cumulo.osc_run("image", "delete", image["id"], cloud=DEMO)

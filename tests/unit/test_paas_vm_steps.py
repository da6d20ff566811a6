"""PaaS nodes on QEMU VMs (paas/guest.py, engine/actions_vm.py) without a VM: the plan's "prepare"
step and user_data params, the deploy's marking of VM tiers from the image, the prepare action's
handling of the guest's answers, and the boot script. The real thing (two tiny VMs: the disk
formatted once, the template's install, the boot's configure+start collected) is
tests/contract/test_paas_vm_recipes.py."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cumulo import errors
from cumulo.paas import exec as px
from cumulo.paas import guest
from cumulo.paas.engine import actions_vm
from cumulo.paas.engine import plan as deploy
from cumulo.paas.engine.base import StepFailed
from cumulo.paas.engine.runner import PaasEngine

RECIPES = {"install": "echo install\n", "configure": "echo configure $GREETING\n", "start": "echo start\n"}


def tier(*, vm: bool = True, bootstrap: str | None = None, products: int = 1) -> dict[str, Any]:
    t: dict[str, Any] = {
        "name": "web", "flavour": "m1.tiny", "image": "tiny-vm", "min": 1, "max": 3, "initial": 1,
        "products": [{"name": f"p{i}", "version": "1.0", "attributes": [{"key": "GREETING", "value": "hi 'there'"}],
                      "release": {"recipes": RECIPES, "metadata": []}} for i in range(products)],
        "metadata": [{"key": "bootstrap", "value": bootstrap}] if bootstrap else [],
    }
    if vm:
        t["guest"] = "vm"
    return t


def keys(steps: list[Any]) -> list[str]:
    return [s.key for s in steps]


def test_a_vm_node_prepares_its_disk_after_active_and_before_its_first_product() -> None:
    steps = deploy.node_steps("i" * 8, tier(), 1, "env-web-1", products_after=("start:db:1:kv",))
    assert keys(steps)[:4] == ["server:web:1", "active:web:1", "prepare:web:1", "install:web:1:p0"]
    by = {s.key: s for s in steps}
    assert by["prepare:web:1"].kind == "prepare" and by["prepare:web:1"].depends_on == ("active:web:1",)
    assert by["install:web:1:p0"].depends_on == ("prepare:web:1", "start:db:1:kv")
    assert "bootstrap" not in by["server:web:1"].params  # a fresh node installs through exec
    # a container tier: no prepare, as before
    plain = deploy.node_steps("i" * 8, tier(vm=False), 1, "env-web-1")
    assert "prepare:web:1" not in keys(plain) and plain[2].depends_on == ("active:web:1",)


def test_only_a_template_vm_node_of_a_bootstrap_user_data_tier_boots_with_user_data() -> None:
    steps = {s.key: s for s in deploy.node_steps("i" * 8, tier(bootstrap="user_data"), 2, "env-web-2",
                                                 from_template="img-1")}
    assert steps["server:web:2"].params["bootstrap"] == "user_data"
    assert steps["install:web:2:p0"].params["skip"] == "template image img-1"
    assert "boot" not in steps["install:web:2:p0"].params
    assert steps["configure:web:2:p0"].params["boot"] == steps["start:web:2:p0"].params["boot"] == "user_data"
    for t, template in ((tier(bootstrap="user_data"), None), (tier(), "img-1"), (tier(vm=False, bootstrap="user_data"), "img-1"),
                        (tier(bootstrap="exec"), "img-1")):
        got = {s.key: s for s in deploy.node_steps("i" * 8, t, 2, "env-web-2", from_template=template)}
        assert "bootstrap" not in got["server:web:2"].params and "boot" not in got["configure:web:2:p0"].params


def test_images_with_the_guest_agent_are_vm_images() -> None:
    assert guest.is_vm_image({"hw_qemu_guest_agent": "yes"}) and guest.is_vm_image({"properties": {"hw_qemu_guest_agent": "True"}})
    assert not guest.is_vm_image({"hw_qemu_guest_agent": "no"}) and not guest.is_vm_image({"container_format": "docker"})


async def test_the_deploy_marks_the_tiers_whose_image_is_a_vm_image_in_the_snapshot() -> None:
    images = {"id-vm": {"id": "id-vm", "name": "tiny-vm", "hw_qemu_guest_agent": "yes"},
              "id-box": {"id": "id-box", "name": "busybox"}}

    async def get(_ctx: Any, ref: str) -> Mapping[str, Any]:
        if ref not in images:
            raise errors.NotFound(ref)
        return images[ref]

    async def list_images(_ctx: Any, filters: list[tuple[str, str]]) -> tuple[list[Mapping[str, Any]], None]:
        name = dict(filters)["name"]
        return [i for i in images.values() if i["name"] == name], None

    me = SimpleNamespace(services=SimpleNamespace(images=SimpleNamespace(get=get, list_images=list_images)))
    env = {"name": "e", "tiers": [{"name": "a", "image": "tiny-vm"}, {"name": "b", "image": "id-vm"},
                                  {"name": "c", "image": "busybox"}, {"name": "d", "image": "gone"}]}
    out = await PaasEngine._mark_vm_tiers(me, None, env)  # type: ignore[arg-type]
    assert [t.get("guest") for t in out["tiers"]] == ["vm", "vm", None, None]
    assert "guest" not in env["tiers"][0]  # the caller's environment is not changed


class Run:
    def __init__(self, server: Mapping[str, Any], answer: Mapping[str, Any] | Exception, environment: Any = None) -> None:
        self.step = {"key": "prepare:web:1", "kind": "prepare", "params": {"tier": "web", "replica": 1, "node": "env-web-1"}}
        self.task = {"id": 5}
        self.instance_id = "inst-1"
        self.ctx = None
        self.sent: list[tuple[list[str], bytes]] = []
        self._environment = environment

        async def get(_ctx: Any, _id: str) -> Mapping[str, Any]:
            return server

        async def exec_in_server(_ctx: Any, _row: Any, argv: list[str], **kw: Any) -> Mapping[str, Any]:
            self.sent.append((argv, kw["stdin"]))
            if isinstance(answer, Exception):
                raise answer
            return answer

        self.services = SimpleNamespace(compute=SimpleNamespace(get=get, exec_in_server=exec_in_server),
                                        conf=SimpleNamespace(paas=SimpleNamespace(exec_timeout=300.0)), db=None)

    def output_of(self, key: str) -> Mapping[str, Any]:
        assert key == "active:web:1"
        return {"server_id": "srv-1"}

    async def instance(self) -> dict[str, Any]:
        return {"name": "env", "environment": self._environment}


async def test_prepare_runs_the_disk_script_through_exec_and_reports_the_disk() -> None:
    ok = {"exit_code": 0, "stdout": "paas: formatted /dev/vda (ext2, label cumulo-root)\npaas: /dev/vda mounted on "
                                    "/mnt/root\nPAAS_DISK=/dev/vda\n", "stderr": ""}
    run = Run({"uuid": "srv-1", "hypervisor_type": "QEMU"}, ok)
    assert await actions_vm.prepare(run) == {"disk": "/dev/vda", "formatted": True, "mount": "/mnt/root"}  # type: ignore[arg-type]
    argv, stdin = run.sent[0]
    assert argv == ["/bin/sh", "-s"] and b"mke2fs -N 16384 -m 0 -L \"$LABEL\"" in stdin
    assert b"-lt 270 ]" in stdin  # it waits for the end of the guest's boot, within the exec timeout
    # a container: nothing to do
    skip = Run({"uuid": "srv-1", "hypervisor_type": "fake"}, ok)
    out = await actions_vm.prepare(skip)  # type: ignore[arg-type]
    assert out is not None and "skipped" in out and not skip.sent


async def test_prepare_fails_with_the_guests_words_when_the_disk_is_not_blank() -> None:
    bad = {"exit_code": 4, "stdout": "", "stderr": "paas: the root disk /dev/vda holds a xfs filesystem not labelled "
                                                   "cumulo-root: it is not formatted\n"}
    with pytest.raises(StepFailed, match="exited 4") as info:
        await actions_vm.prepare(Run({"uuid": "srv-1", "hypervisor_type": "QEMU"}, bad))  # type: ignore[arg-type]
    assert "xfs filesystem" in info.value.output and info.value.exit_code == 4
    with pytest.raises(StepFailed, match="could not run"):
        await actions_vm.prepare(Run({"uuid": "srv-1", "hypervisor_type": "QEMU"}, errors.InvalidState("paused")))  # type: ignore[arg-type]


async def test_the_boot_user_data_configures_and_starts_each_product_with_the_steps_run_ids(
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def resolve(_db: Any, _inst: str, product: Mapping[str, Any], **_kw: Any) -> dict[str, str]:
        return {a["key"]: a["value"] for a in product["attributes"]}

    monkeypatch.setattr("cumulo.paas.attributes.resolve", resolve)
    run = Run({}, {}, environment={"tiers": [tier(bootstrap="user_data", products=2)]})
    data = base64.b64decode(await actions_vm.boot_user_data(run, "web", 2, "env-web-2") or "")  # type: ignore[arg-type]
    text = data.decode()
    assert text.startswith("#!/bin/sh\n") and "mke2fs" in text and "-lt 0 ]" in text  # prepare, without the wait
    order = [line for line in text.splitlines() if line.startswith('echo "cumulo-paas: ') and ":web:2:" in line]
    assert order == [f'echo "cumulo-paas: {k}:web:2:p{i}"' for i in (0, 1) for k in ("configure", "start")]
    for i in (0, 1):
        assert px.run_id(5, f"configure:web:2:p{i}") in text and px.run_id(5, f"start:web:2:p{i}") in text
    assert "export GREETING='hi '\"'\"'there'\"'\"''" in text and "echo install" not in text
    assert "export PAAS_ROOT=/mnt/root/paas" in text and 'PAAS_IP=$(ip -4 -o addr' in text
    # too big for a user_data: none (the steps run through exec)
    huge = tier(bootstrap="user_data")
    huge["products"][0]["release"]["recipes"] = {**RECIPES, "configure": "#" * (guest.MAX_USER_DATA + 1)}
    assert await actions_vm.boot_user_data(Run({}, {}, environment={"tiers": [huge]}), "web", 2, "n") is None  # type: ignore[arg-type]

    async def unresolved(*_a: Any, **_kw: Any) -> dict[str, str]:
        raise StepFailed("tier web, product p0, attribute X: OUTPUT(db.kv.URL) is not there yet")

    monkeypatch.setattr("cumulo.paas.attributes.resolve", unresolved)  # the configure step fails on it later
    assert await actions_vm.boot_user_data(run, "web", 2, "env-web-2") is None  # type: ignore[arg-type]


def test_collected_at_boot_reads_the_wrappers_words() -> None:
    run = px.RecipeRun(step="start", exit_code=0,
                       stderr="paas: start of p0 finished in an earlier attempt: its result is collected\n")
    assert guest.collected_at_boot(run) and not guest.collected_at_boot(px.RecipeRun(step="start", exit_code=0))


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
def test_only_a_blank_disk_is_ever_formatted(tmp_path: Path) -> None:
    """prepare's guard (guest.BLANK_CHECK), run by the host's busybox (the tiny VM's) on image files:
    zeros are blank; an ext2 filesystem, a byte of data, btrfs's superblock area, an empty or
    missing device are not."""
    def check(path: Path) -> tuple[int, str]:
        done = subprocess.run(["/bin/sh", "-c", f'{guest.BLANK_CHECK}\nnot_blank "$1"', "sh", str(path)],  # noqa: S603
                              capture_output=True, text=True, timeout=60, check=False)
        return done.returncode, done.stdout.strip()

    def image(name: str, at: int | None = None) -> Path:
        path = tmp_path / name
        with path.open("wb") as f:
            f.truncate(8 << 20)
            if at is not None:
                f.seek(at)
                f.write(b"\x01")
        return path

    assert check(image("zero.img")) == (1, "")
    fs = image("fs.img")
    subprocess.run(["busybox", "mke2fs", "-F", "-L", "other", str(fs), "8192"], capture_output=True, check=True)  # noqa: S603, S607
    for path in (fs, image("data.img", 4000), image("btrfs.img", 65536 + 64)):
        rc, why = check(path)
        assert rc == 0 and why == f"{path} is not blank (data in its first {guest.BLANK_BYTES} bytes: a partition " \
                                   "table or a filesystem not labelled cumulo-root)", why
    assert check(image("late.img", guest.BLANK_BYTES + 10)) == (1, "")  # beyond what is read
    (tmp_path / "empty.img").write_bytes(b"")
    for path in (tmp_path / "empty.img", tmp_path / "missing.img"):
        assert check(path) == (0, f"{path} cannot be read")

"""A volume of another host on the compute side (issue 14, volumes from any host): an `nbd`
connection_info becomes a DiskSpec of kind nbd (the export, this host's key dir), which QEMU opens
with its own nbd driver and a tls-creds-psk object, at boot and by hot plug; a malformed target is
refused before any QEMU or daemon sees it; the agent's connector carries the host's underlay address."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cumulo import errors
from cumulo.compute.agent import disks
from cumulo.compute.drivers.base import DiskSpec
from cumulo.compute.drivers.qemu import blockdev, netdev
from cumulo.compute.drivers.qemu.process import VmConfig
from cumulo.compute.drivers.runc import volhost
from cumulo.compute.volumes import connector_for
from cumulo.errors import DriverError

VID = "5f0c7c2e-8a1b-4d6e-9f00-1234567890ab"
ATT = "0d6a0fd6-567c-42c0-99b6-fb631b31bce2"
DATA = {"volume_id": VID, "access_mode": "rw", "host": "host2", "target_host": "198.18.20.2", "target_port": 10809,
        "export": "ab" * 16, "tls": "psk", "psk_identity": f"cumulo-{ATT}"}


class Keys:
    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    async def location(self, volume_id: str) -> Any:
        raise errors.NotFound("no file here: the volume is another host's")

    async def reap_loops(self, keep: set[str]) -> list[str]:
        return []

    async def nbd_credentials(self, attachment_id: str, identity: str) -> str:
        self.asked.append((attachment_id, identity))
        return f"/srv/state/volumes/.run/nbd-keys/{attachment_id}"

    async def forget_credentials(self, attachment_id: str) -> None:
        return None


def row(**data: Any) -> dict[str, Any]:
    return {"volume_id": VID, "destination_type": "volume", "attachment_id": ATT, "device_name": "/dev/vdc",
            "boot_index": None, "connection_info": {"driver_volume_type": "nbd", "data": {**DATA, **data}}}


async def test_an_nbd_connection_info_is_a_remote_disk_with_this_hosts_key_dir() -> None:
    keys = Keys()
    [d] = await disks.disk_specs([row()], keys)
    assert d.kind == "nbd" and d.device_name == "/dev/vdc" and not d.read_only
    assert d.target == {"target_host": "198.18.20.2", "target_port": "10809", "export": "ab" * 16,
                        "psk_identity": f"cumulo-{ATT}"}
    assert d.tls_dir.endswith(ATT) and keys.asked == [(ATT, f"cumulo-{ATT}")]
    assert DiskSpec.from_dict(d.to_dict()) == d  # what the drivers record
    blockdev.check(d)
    volhost.check_disk(d)


@pytest.mark.parametrize("bad", [{"target_host": "host1; rm"}, {"target_port": "x"}, {"export": "a/b"},
                                 {"psk_identity": "a,b"}])
async def test_a_malformed_target_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(errors.CumuloError, match="NBD"):
        await disks.disk_specs([row(**bad)], Keys())


async def test_qemu_opens_the_export_with_its_nbd_driver_and_the_attachments_key() -> None:
    [d] = await disks.disk_specs([row()], Keys())
    node = blockdev.node_name(VID)
    proto, fmt = blockdev.node_props(d)
    assert proto == {"driver": "nbd", "node-name": node + "-file", "export": "ab" * 16,
                     "server": {"type": "inet", "host": "198.18.20.2", "port": "10809"},
                     "tls-creds": node + "-tls", "reconnect-delay": 10, "discard": "unmap"}
    assert fmt["file"] == node + "-file" and fmt["driver"] == "raw"
    assert blockdev.tls_object(d) == {"qom-type": "tls-creds-psk", "id": node + "-tls", "endpoint": "client",
                                      "dir": d.tls_dir, "username": f"cumulo-{ATT}"}
    q35 = VmConfig(memory_mb=256, vcpus=1, accel="tcg", machine="q35", hotplug_ports=netdev.hotplug_ports("q35", 1))
    argv = blockdev.disk_argv(q35, [(d, "hp1")])
    assert argv[0] == "-object" and json.loads(argv[1])["qom-type"] == "tls-creds-psk"
    assert argv[2] == "-blockdev" and json.loads(argv[3])["driver"] == "nbd"
    local = DiskSpec(volume_id=VID, path=f"/srv/state/volumes/{VID}.raw")
    assert blockdev.tls_object(local) is None and blockdev.disk_argv(q35, [(local, "hp1")])[0] == "-blockdev"
    with pytest.raises(DriverError):
        blockdev.check(DiskSpec(volume_id=VID, path="nbd://x", kind="nbd", tls_dir="relative"))


def test_the_connector_carries_the_underlay_address_only_when_there_is_one() -> None:
    assert connector_for("host2", "/dev/vdb", "198.18.20.3")["ip"] == "198.18.20.3"
    assert "ip" not in connector_for("host2", "/dev/vdb")


async def test_the_loop_reap_drops_connections_no_server_holds(tmp_path: Any) -> None:
    """A connection left by a crash (its daemon dead: nothing mounted) goes with the reap, unless kept;
    a dir whose name is no volume id is not touched."""
    from cumulo.blockstore import nbd
    from cumulo.runtime_volumes import HostBlockStore

    class Loops:
        async def reap(self, keep: set[str]) -> list[str]:
            return []

    run = tmp_path / "run"
    kept, stale = VID, ATT
    for name in (kept, stale, "not-a-volume"):
        (run / nbd.CONNECTIONS / name).mkdir(parents=True)
        (run / nbd.CONNECTIONS / name / "disk").touch()
    store = HostBlockStore(object(), Loops(), None, run / "nbd-keys")  # type: ignore[arg-type]
    assert await store.reap_loops({kept}) == [stale]
    assert sorted(p.name for p in (run / nbd.CONNECTIONS).iterdir()) == sorted([kept, "not-a-volume"])


async def test_a_server_that_moved_here_gets_a_connection_from_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """disks.connect_here (Node.spec): a mapping whose connection is the volume host's file, on a host
    without that file, is reconnected from this host (the export) and the mapping updated; a file
    this host has, an nbd mapping, or one machine (no underlay) are left as they are."""
    from cumulo.compute import volume_records

    class Client:
        def __init__(self) -> None:
            self.asked: list[tuple[str, dict[str, Any]]] = []

        async def attachment_reconnect(self, ctx: Any, attachment_id: str, connector: Any) -> dict[str, Any]:
            self.asked.append((attachment_id, dict(connector)))
            return {"connection_info": {"driver_volume_type": "nbd", "data": DATA}}

    class Db:
        def write(self) -> Any:
            import contextlib

            @contextlib.asynccontextmanager
            async def conn() -> Any:
                yield None
            return conn()

    updated: list[tuple[str, Any]] = []

    async def update(conn: Any, uuid: str, **values: Any) -> None:
        updated.append((uuid, values["connection_info"]))

    monkeypatch.setattr(volume_records, "update", update)
    local = {"uuid": "bdm-1", **row(), "connection_info": {"driver_volume_type": "cumulo_file", "data": {}}}
    client = Client()
    kw: dict[str, Any] = {"host": "host3", "store": Keys(), "client": client, "db": Db()}
    [moved] = await disks.connect_here([local], {"uuid": "srv"}, underlay_ip="198.18.20.4", **kw)
    assert moved["connection_info"]["driver_volume_type"] == "nbd" and updated == [("bdm-1", moved["connection_info"])]
    assert client.asked[0][0] == ATT and client.asked[0][1]["ip"] == "198.18.20.4"
    assert await disks.connect_here([local], {"uuid": "srv"}, underlay_ip="", **kw) == [local]
    assert await disks.connect_here([row()], {"uuid": "srv"}, underlay_ip="198.18.20.4", **kw) == [row()]
    assert len(client.asked) == 1

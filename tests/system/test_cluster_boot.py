"""The scaled-out configuration's own check (issue 14, acceptance 1): a runc container through the
real `openstack` CLI on a cluster (tests/system/cluster.py: PostgreSQL + RabbitMQ, `cumulo api`,
conductor, scheduler, an L3 host and 3 dev hosts in namespaces; a second conductor started beside
the first shows in the service list). The container boots on a dev host (never the network-only L3
host), runs under that host's runc root, its bytes downloaded into that host's image cache; its
console log is the container's output; the delete leaves nothing on the host.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cluster import ClusterCloud

cumulo_configs = ("scaled",)
cumulo_options = {"driver": "runc", "args": ["--no-external"]}


def runc_state(state_dir: Path, uuid: str) -> dict[str, Any] | None:
    done = subprocess.run(["runc", "--root", str(state_dir / "runc-state"), "state", f"cumulo-{uuid}"],  # noqa: S603, S607
                          capture_output=True, text=True, timeout=30, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_a_container_boots_on_a_dev_host(cumulo: ClusterCloud) -> None:
    cloud = cumulo
    services = cloud.osc("compute", "service", "list", "--service", "nova-compute")
    by_host = {s["Host"]: s["Status"] for s in services}
    assert by_host == {cloud.l3_host: "disabled", **{h: "enabled" for h in cloud.hosts}}, by_host
    cloud.start_extra("conductor", "conductor2")  # a peer on the same queue (the launcher's extra processes)
    conductors = {s["Host"] for s in cloud.osc("compute", "service", "list", "--service", "nova-conductor")}
    assert conductors == {f"c{cloud.tag}-ctl", f"c{cloud.tag}-conductor2"}, conductors
    made = cloud.osc("server", "create", "--image", "busybox", "--flavor", "m1.nano", "--nic", "none", "--wait",
                     "cluster-boot", timeout=300)
    uuid = made["id"]
    try:
        assert made["status"] == "ACTIVE", made
        host = made["OS-EXT-SRV-ATTR:host"]
        assert host in cloud.hosts, (host, cloud.hosts)
        state_dir = cloud.host_state_dir(host)
        state = runc_state(state_dir, uuid)
        assert state is not None and state["status"] == "running", state
        assert [p for p in (state_dir / "image-cache").iterdir() if not p.name.startswith(".")]
        deadline = time.monotonic() + 60
        while "hello from cumulo busybox" not in (log := cloud.osc("console", "log", "show", uuid)):
            assert time.monotonic() < deadline, log
            time.sleep(0.5)
    finally:
        cloud.osc("server", "delete", "--wait", uuid, timeout=300)
    assert runc_state(cloud.host_state_dir(host), uuid) is None
    assert not (cloud.host_state_dir(host) / "runc" / uuid).exists()
    assert cloud.osc("server", "list", "--all-projects") == []

"""A real container through a split cloud (issue 14, PROC): `cumulo api`, `cumulo conductor`,
`cumulo scheduler` and `cumulo compute --host NAME --driver runc` as separate processes over
PostgreSQL and RabbitMQ, each on a state dir of its own. The compute host gets the image's bytes
by download from the API process (api_url: image.remote.RemoteImages, into its image cache), never
from the API's store. One `openstack server create --wait` with the real CLI, the container
running under the compute process's runc root, then the delete leaves nothing of it.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import _leftovers
import pytest
from _procs_util import SplitCloud
from conftest import free_port, skip_unless_runc

START = 240.0


@pytest.fixture(scope="module")
def split(scale_services: dict[str, str]) -> Iterator[tuple[SplitCloud, str, int]]:
    skip_unless_runc()
    if not scale_services.get("dir"):
        pytest.skip("needs the run's RabbitMQ node dir (scripts/test.sh exports CUMULO_TEST_SERVICES_DIR)")
    root = Path(tempfile.mkdtemp(prefix=_leftovers.cloud_root_prefix() + "procs-runc-"))
    host = f"rh-{secrets.token_hex(3)}"
    port = free_port()
    settings = {"host_name": host, "l3_host": host, "volume_host": host, "external_link": False,
                "metrics_port": 0, "api_url": f"http://127.0.0.1:{port}"}
    with SplitCloud(root, scale_services, settings) as cloud:
        try:
            api, _ = cloud.start_api(name="api", port=port)
            api.wait_ready(START)
            others = [cloud.start("conductor"), cloud.start("scheduler"), cloud.start_compute(host, "--driver", "runc")]
            for proc in others:
                proc.wait_ready(START)
        except BaseException:
            print(cloud.logs())
            raise
        yield cloud, host, port


def runc_state(state_dir: Path, uuid: str) -> dict[str, object] | None:
    done = subprocess.run(["runc", "--root", str(state_dir / "runc-state"), "state", f"cumulo-{uuid}"],  # noqa: S603, S607
                          capture_output=True, text=True, timeout=30, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_a_container_boots_on_a_compute_process(split: tuple[SplitCloud, str, int]) -> None:
    cloud, host, port = split
    server = json.loads(cloud.osc(port, "server", "create", "--image", "busybox", "--flavor", "m1.nano",
                                  "--nic", "none", "--wait", "-f", "json", "procs-runc", timeout=300))
    uuid = server["id"]
    try:
        assert server["status"] == "ACTIVE", server
        shown = json.loads(cloud.osc(port, "server", "show", uuid, "-f", "json"))
        assert shown["OS-EXT-SRV-ATTR:host"] == host
        state_dir = cloud.root / host
        state = runc_state(state_dir, uuid)
        assert state is not None and state["status"] == "running", state
        # the bytes came by download from the API process into this host's cache, not from its store
        assert [p for p in (state_dir / "image-cache").iterdir() if not p.name.startswith(".")]
        assert not (state_dir / "images" / "blobs").exists() or not any((state_dir / "images" / "blobs").iterdir())
    finally:
        cloud.osc(port, "server", "delete", "--wait", uuid, timeout=300)
    deadline = time.monotonic() + 60
    while runc_state(cloud.root / host, uuid) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert runc_state(cloud.root / host, uuid) is None

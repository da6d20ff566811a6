"""A PaaS template image on runc (cumulo.paas.template's premise, on a real busybox container).

A node "installed" by recipes run through the driver's exec (files under /opt/paas, a daemon started
with its stdio closed) is snapshotted while the daemon runs; a new container booted from that image
has every installed file and no process of the old node (the template path then runs only configure
and start), and start works there. The snapshot leaves the source node running.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_runc_image_ops import (  # noqa: F401  # drv: a fixture
    _image,
    busybox,
    drv,
    make_spec,
    needs_runc,
    sh,
    spawn,
)

from cumulo.compute.drivers.base import Capability, PowerState, driver_for
from cumulo.compute.drivers.execspec import ExecRequest
from cumulo.compute.drivers.runc import RuncDriver

INSTALL = """set -e
PAAS_ROOT=/opt/paas
mkdir -p "$PAAS_ROOT/httpd-web/www" "$PAAS_ROOT/.state"
echo "installed $PAAS_PRODUCT" > "$PAAS_ROOT/httpd-web/www/index.html"
echo rc=0 > "$PAAS_ROOT/.state/install.1.rc"
"""
START = """busybox httpd -p 127.0.0.1:8080 -h /opt/paas/httpd-web/www </dev/null >/dev/null 2>&1
busybox wget -q -O - http://127.0.0.1:8080/index.html
"""


def recipe(script: str) -> ExecRequest:
    return ExecRequest(argv=("/bin/sh", "-s"), stdin=script.encode(), timeout=60,
                       env={"PATH": "/bin:/usr/bin:/sbin:/usr/sbin", "PAAS_PRODUCT": "httpd-web"})


async def httpd_running(d: RuncDriver, uuid: str) -> bool:
    return "httpd -p 127.0.0.1:8080" in await asyncio.to_thread(sh, d, uuid, "ps -o args")


@needs_runc
async def test_a_template_node_boots_with_the_installed_files_and_no_process(drv: RuncDriver, tmp_path: Path) -> None:  # noqa: F811
    ex = driver_for(drv, Capability.EXEC)
    node = await spawn(drv, make_spec(busybox(tmp_path), "paas-web-1"))
    assert (await ex.exec_in(node.uuid, recipe(INSTALL))).exit_code == 0
    started = await ex.exec_in(node.uuid, recipe(START))
    assert started.exit_code == 0 and started.stdout == b"installed httpd-web\n", started
    assert await httpd_running(drv, node.uuid)

    work = tmp_path / "work"
    work.mkdir()
    snap = await drv.snapshot(node.uuid, str(work))
    assert await drv.get_power_state(node.uuid) == PowerState.RUNNING and await httpd_running(drv, node.uuid)

    new = await spawn(drv, make_spec(_image(Path(snap.path)), "paas-web-2"))
    assert await drv.get_power_state(new.uuid) == PowerState.RUNNING
    files = await asyncio.to_thread(sh, drv, new.uuid, "cat /opt/paas/httpd-web/www/index.html /opt/paas/.state/install.1.rc")
    assert files == "installed httpd-web\nrc=0"
    assert not await httpd_running(drv, new.uuid)  # processes are not in an image: start runs on the node
    again = await ex.exec_in(new.uuid, recipe(START))
    assert again.exit_code == 0 and again.stdout == b"installed httpd-web\n", again
    # the image's own command (busybox's sleep loop) keeps the new node up
    assert "sleep 3600" in await asyncio.to_thread(sh, drv, new.uuid, "ps -o args")

"""What the OCCI tests over the in-process cloud (the `cloud` fixture: real services, fake driver)
share: the services as occi.deps hands them to the backends, the /occi app as a caller, an image to
boot, and polling for a condition with a deadline."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from _asgi_ctx import AsCtx, outside

from cumulo.context import RequestContext
from cumulo.occi.api import make_app
from cumulo.occi.deps import OcciServices
from cumulo.web.http import PrefixDispatcher


def services(cloud: Any) -> OcciServices:
    s = cloud.services
    return OcciServices(conf=s.conf, db=s.db, identity=s.identity, images=s.images, compute=s.compute,
                        network=s.network, volume=s.volume, placement=s.placement)


def occi_client(cloud: Any, ctx: RequestContext) -> httpx.AsyncClient:
    """The cloud's /occi app (occi.api.make_app over its services), every request made as `ctx`."""
    app = AsCtx(make_app(services(cloud)), ctx)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=PrefixDispatcher({"/occi": app}, outside("/occi"))),
                             base_url="http://cumulo.test")


async def image(client: httpx.AsyncClient, name: str = "cirros", **props: Any) -> str:
    """An active image (a few bytes of raw) made through the image API as `client`'s caller."""
    r = await client.post("/image/v2/images", json={"name": name, "disk_format": "raw", "container_format": "bare", **props})
    assert r.status_code == 201, r.text
    image_id = str(r.json()["id"])
    r = await client.put(f"/image/v2/images/{image_id}/file", content=b"bytes",
                         headers={"content-type": "application/octet-stream"})
    assert r.status_code == 204, r.text
    return image_id


async def until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20.0) -> Any:
    """Poll `check` until it returns something truthy (a deadline, never a fixed wait)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def unseal_volumes(cloud: Any) -> None:
    """Clear the immutable attribute (an offline storage's seal) of every volume file of the cloud: a
    test that failed half way leaves no file its temp dir cannot remove."""
    volumes = Path(cloud.services.conf.state_dir) / "volumes"
    if os.geteuid() == 0 and volumes.is_dir():
        subprocess.run(["chattr", "-R", "-i", str(volumes)], check=False, capture_output=True)  # noqa: S603, S607

"""Rebuild of a runc server onto another image.

Same uuid, hostname, netns and config drive identity; the private upper layer is discarded with its
root disk, a fresh one of the flavor's size replaces it (Nova's rebuild wipes the root disk), the
overlay is mounted again on the new image's cached root, config.json is rewritten with the new
image's process/env/cwd but the server's current limits (read from its config.json: a resize may
have changed them), then it starts.
"""

from __future__ import annotations

import asyncio
import json
import os

from cumulo.compute.drivers.base import InstanceSpec
from cumulo.compute.drivers.files import write_json
from cumulo.compute.drivers.local import RECORD
from cumulo.compute.drivers.runc import bundle, nics, overlay, provision
from cumulo.compute.drivers.runc.core import CONFIG, RuncCore
from cumulo.compute.drivers.runc.state import container_id
from cumulo.errors import CumuloError, DriverError
from cumulo.host.revert import Reverter


class Rebuild(RuncCore):
    async def rebuild(self, spec: InstanceSpec) -> None:
        if spec.image is None:
            raise DriverError("The runc driver needs a container image (docker or oci) to rebuild onto")
        idir = self.existing_dir(spec.uuid)
        cid = container_id(spec.uuid)
        image_id = spec.image.id
        try:
            # Everything that can be checked is checked before the old root goes.
            lower, image_cfg = await provision.image_root(self.images, spec.image)
            current = json.loads(await asyncio.to_thread((idir / CONFIG).read_text))
            fresh = await asyncio.to_thread(provision.runtime_config, spec, image_cfg, lower, idir,
                                            self.pids_limit)  # reads /etc/passwd
            config = bundle.keep_limits(fresh, current)
            old = json.loads(await asyncio.to_thread((idir / RECORD).read_text))
        except (CumuloError, OSError, ValueError) as exc:
            raise DriverError(f"rebuild of {spec.uuid} onto image {image_id} failed: {exc}") from exc
        try:
            async with Reverter() as revert:
                revert.add(self.runc.delete, cid)  # a container that was made but did not start
                await self._stop(spec.uuid, self.stop_grace, "rebuild")
                merged = idir / "rootfs"
                await overlay.unmount_all(merged)
                # A fresh root disk of the flavor's size: the old upper layer goes, the limit stays.
                upper, work = await self.disks.recreate(idir, spec.flavor.root_gb)
                await asyncio.to_thread(os.chmod, upper, (await asyncio.to_thread(os.stat, lower)).st_mode & 0o7777)
                await overlay.mount(lower, upper, work, merged)
                await provision.provision(idir, spec)
                await nics.write_dns(idir)  # the fresh root has the image's own resolv.conf
                await asyncio.to_thread(write_json, idir / CONFIG, config)
                await self.write_record(idir, provision.record(spec, image_cfg, float(old.get("created_at", 0)), lower))
                await self._start(cid, idir, config["process"]["args"])
                revert.commit()
        except (CumuloError, OSError) as exc:
            raise DriverError(f"rebuild of {spec.uuid} onto image {image_id} failed: {exc}") from exc

"""What the PaaS manager reaches: the cloud's services, called with a RequestContext exactly as the
OpenStack APIs call them (never the HTTP APIs), so scoping, policy and quotas are theirs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cumulo.bus.base import Bus
from cumulo.conf import Settings
from cumulo.db import Database

if TYPE_CHECKING:
    from cumulo.compute.service.servers import ComputeService
    from cumulo.identity.service import IdentityService
    from cumulo.image.service import ImageService
    from cumulo.network.service import NetworkService
    from cumulo.volume.service import VolumeService


@dataclass(frozen=True)
class PaasServices:
    conf: Settings
    db: Database
    bus: Bus
    identity: IdentityService
    images: ImageService
    compute: ComputeService
    network: NetworkService
    volume: VolumeService

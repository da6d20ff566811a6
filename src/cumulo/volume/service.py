"""The volume service: one object over Cinder's resources, in facets stacked by inheritance.

- `types`: volume types, extra specs, access;
- `volumes`: create (blank, snapshot, clone, image, backup), list, show, update, delete, metadata;
- `attachments`: the 3.27+ attachments API and os-reserve/os-attach/os-detach ...;
- `actions`: extend, bootable/read-only flags, retype, upload to image, reset-status;
- `snapshots`: snapshots and backups;
- `quotas`: quota sets, the default quota class and absolute limits;
- `transfers`: volume transfers between projects (auth key);
- `backends`: the admin's services, hosts, pools and capabilities of the one file backend;
- `messages`: Cinder's user messages (why an asynchronous operation failed).

Every method takes the caller's RequestContext, scopes its queries to the caller's project (the
admin's reach is explicit) and returns records (dicts) that `cumulo.volume.api.views` renders for
the negotiated microversion. Slow work is cast to the `VolumeWorker` (worker_api).
"""

from __future__ import annotations

from cumulo.volume.messages import VolumeMessages


class VolumeService(VolumeMessages):
    """Cinder's volumes, types, snapshots, backups, attachments and quotas."""

"""The deprecated extensions API (GET /extensions, /extensions/{alias}).

Nova froze this list when microversions replaced extensions, and still serves it, the same on every
deployment; clients and Tempest read it. We serve the same aliases and names with short
descriptions of our own. Every entry has the same namespace and date, as in Nova.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cumulo import policy
from cumulo.compute.api import _common
from cumulo.errors import NotFound
from cumulo.web.http import json_response

policy.register({"os_compute_api:extensions": policy.READER})

_NAMESPACE = "http://docs.openstack.org/compute/ext/fake_xml"
_UPDATED = "2014-12-03T00:00:00Z"

# alias, name, description: one line each.
_TABLE = """\
NMN|Multinic|Multiple network support.
OS-DCF|DiskConfig|Disk management extension.
OS-EXT-AZ|ExtendedAvailabilityZone|Availability zone on servers.
OS-EXT-IMG-SIZE|ImageSize|Image size in image listings.
OS-EXT-IPS|ExtendedIps|Address type in the address list.
OS-EXT-IPS-MAC|ExtendedIpsMac|MAC address in the address list.
OS-EXT-SRV-ATTR|ExtendedServerAttributes|Extended server attributes.
OS-EXT-STS|ExtendedStatus|Extended status.
OS-FLV-DISABLED|FlavorDisabled|Disabled status of a flavor.
OS-FLV-EXT-DATA|FlavorExtraData|Additional flavor data.
OS-SCH-HNT|SchedulerHints|Key/value hints for the scheduler.
OS-SRV-USG|ServerUsage|launched_at and terminated_at on servers.
os-access-ips|AccessIPs|Access IPs.
os-admin-actions|AdminActions|Admin-only server actions.
os-admin-password|AdminPassword|Admin password management.
os-agents|Agents|Agents.
os-aggregates|Aggregates|Admin-only aggregate administration.
os-assisted-volume-snapshots|AssistedVolumeSnapshots|Assisted volume snapshots.
os-attach-interfaces|AttachInterfaces|Interface attachment.
os-availability-zone|AvailabilityZone|Availability zones on create, and their listing.
os-baremetal-ext-status|BareMetalExtStatus|Extended bare-metal node status.
os-baremetal-nodes|BareMetalNodes|Admin-only bare-metal node administration.
os-block-device-mapping|BlockDeviceMapping|Boot with block device mappings.
os-block-device-mapping-v2-boot|BlockDeviceMappingV2Boot|Boot with the new block device mapping format.
os-cell-capacities|CellCapacities|Cell capacities.
os-cells|Cells|Cells.
os-certificates|Certificates|Certificates.
os-cloudpipe|Cloudpipe|Cloudpipe instances.
os-cloudpipe-update|CloudpipeUpdate|Cloudpipe VPN address and port.
os-config-drive|ConfigDrive|Config drive.
os-console-auth-tokens|ConsoleAuthTokens|Console token authentication.
os-console-output|ConsoleOutput|Console log output, with tailing.
os-consoles|Consoles|Interactive consoles.
os-create-backup|CreateBackup|Server backups.
os-create-server-ext|Createserverext|Extended server create.
os-deferred-delete|DeferredDelete|Deferred (soft) delete of servers.
os-evacuate|Evacuate|Server evacuation.
os-extended-evacuate-find-host|ExtendedEvacuateFindHost|Evacuation to a host the scheduler picks.
os-extended-floating-ips|ExtendedFloatingIps|Fixed address on floating IP association.
os-extended-hypervisors|ExtendedHypervisors|Extended hypervisors.
os-extended-networks|ExtendedNetworks|Additional network fields.
os-extended-quotas|ExtendedQuotas|Quota deletion and forced updates.
os-extended-rescue-with-image|ExtendedRescueWithImage|Rescue with a chosen image.
os-extended-services|ExtendedServices|Extended services.
os-extended-services-delete|ExtendedServicesDelete|Service deletion.
os-extended-status|ExtendedStatus|Extended status.
os-extended-volumes|ExtendedVolumes|Extended volumes.
os-fixed-ips|FixedIPs|Fixed IPs.
os-flavor-access|FlavorAccess|Flavor access.
os-flavor-extra-specs|FlavorExtraSpecs|Flavor extra specs.
os-flavor-manage|FlavorManage|Flavor create and delete.
os-flavor-rxtx|FlavorRxtx|Flavor rxtx factor.
os-flavor-swap|FlavorSwap|Flavor swap.
os-floating-ip-dns|FloatingIpDns|Floating IP DNS.
os-floating-ip-pools|FloatingIpPools|Floating IP pools.
os-floating-ips|FloatingIps|Floating IPs.
os-floating-ips-bulk|FloatingIpsBulk|Bulk floating IPs.
os-fping|Fping|Fping.
os-hide-server-addresses|HideServerAddresses|Server addresses hidden in some states.
os-hosts|Hosts|Admin-only host administration.
os-hypervisor-status|HypervisorStatus|Hypervisor status.
os-hypervisors|Hypervisors|Admin-only hypervisor administration.
os-instance-actions|InstanceActions|The log of actions taken on a server.
os-instance_usage_audit_log|OSInstanceUsageAuditLog|Admin-only task log.
os-keypairs|Keypairs|Key pairs.
os-lock-server|LockServer|Server lock and unlock.
os-migrate-server|MigrateServer|Server migration.
os-migrations|Migrations|Migrations.
os-multiple-create|MultipleCreate|Several servers in one create.
os-networks|Networks|Admin-only networks.
os-networks-associate|NetworkAssociationSupport|Network association.
os-pause-server|PauseServer|Server pause and unpause.
os-personality|Personality|Personality files.
os-preserve-ephemeral-rebuild|PreserveEphemeralOnRebuild|Ephemeral disk kept on rebuild.
os-quota-class-sets|QuotaClasses|Quota classes.
os-quota-sets|Quotas|Quotas.
os-rescue|Rescue|Server rescue.
os-security-group-default-rules|SecurityGroupDefaultRules|Default security group rules.
os-security-groups|SecurityGroups|Security groups.
os-server-diagnostics|ServerDiagnostics|Server diagnostics.
os-server-external-events|ServerExternalEvents|Server external events.
os-server-group-quotas|ServerGroupQuotas|Server group quotas.
os-server-groups|ServerGroups|Server groups.
os-server-list-multi-status|ServerListMultiStatus|Server list filtered by several statuses.
os-server-password|ServerPassword|Server passwords.
os-server-sort-keys|ServerSortKeys|Sorted server lists.
os-server-start-stop|ServerStartStop|Server start and stop.
os-services|Services|Services.
os-shelve|Shelve|Server shelve.
os-simple-tenant-usage|SimpleTenantUsage|Project usage.
os-suspend-server|SuspendServer|Server suspend and resume.
os-tenant-networks|OSTenantNetworks|Project networks.
os-used-limits|UsedLimits|Used limits.
os-used-limits-for-admin|UsedLimitsForAdmin|Used limits of other projects, for admins.
os-user-data|UserData|User data on server create.
os-user-quotas|UserQuotas|Per-user quotas.
os-virtual-interfaces|VirtualInterfaces|Virtual interfaces.
os-volume-attachment-update|VolumeAttachmentUpdate|Volume attachment update.
os-volumes|Volumes|Volumes."""


def _entry(line: str) -> dict[str, Any]:
    alias, name, description = line.split("|", 2)
    return {"alias": alias, "description": description, "links": [], "name": name,
            "namespace": _NAMESPACE, "updated": _UPDATED}


EXTENSIONS: tuple[dict[str, Any], ...] = tuple(_entry(line) for line in _TABLE.splitlines())
_BY_ALIAS = {e["alias"]: e for e in EXTENSIONS}


async def index(request: Request) -> Response:
    policy.authorize(await _common.caller(request), "os_compute_api:extensions")
    return json_response({"extensions": list(EXTENSIONS)})


async def show(request: Request) -> Response:
    policy.authorize(await _common.caller(request), "os_compute_api:extensions")
    found = _BY_ALIAS.get(request.path_params["alias"])
    if found is None:
        raise NotFound("The resource could not be found.")
    return json_response({"extension": found})


ROUTES = [
    Route("/v2.1/extensions", index, methods=["GET"]),
    Route("/v2.1/extensions/{alias}", show, methods=["GET"]),
]

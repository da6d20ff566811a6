"""The compute family's OpenAPI operations and microversion axis (`cumulo.web.openapi` builds it).

One `Op` per route, whose bodies and queries are the schemas the handlers validate with; the
compute microversions are the axis every Cumulo document is described along.
"""

from __future__ import annotations

from cumulo.compute.api.microversion import MAX_VERSION, MIN_VERSION, Version, v
from cumulo.compute.api.schemas import admin_actions as admin_action_s
from cumulo.compute.api.schemas import admin_extras as extras_s
from cumulo.compute.api.schemas import aggregates as aggregate_s
from cumulo.compute.api.schemas import deferred_actions as deferred_s
from cumulo.compute.api.schemas import flavors as flavor_s
from cumulo.compute.api.schemas import images as cimage_s
from cumulo.compute.api.schemas import instance_actions as ia_s
from cumulo.compute.api.schemas import interfaces as iface_s
from cumulo.compute.api.schemas import keypairs as keypair_s
from cumulo.compute.api.schemas import live_migration as live_s
from cumulo.compute.api.schemas import migrations as migration_s
from cumulo.compute.api.schemas import quota_sets as quota_s
from cumulo.compute.api.schemas import server_actions as action_s
from cumulo.compute.api.schemas import server_groups as group_s
from cumulo.compute.api.schemas import server_metadata as md_s
from cumulo.compute.api.schemas import server_tags as tag_s
from cumulo.compute.api.schemas import servers as server_s
from cumulo.compute.api.schemas import services as service_s
from cumulo.compute.api.schemas import volume_attachments as attach_s
from cumulo.compute.api.schemas import volume_proxies as vproxy_s
from cumulo.web.openapi import Family, Microversions, Op, Schema, op

# The compute microversions: the axis of every document (?microversion= on each /openapi.json).
MICROVERSIONS = Microversions("compute", MIN_VERSION, MAX_VERSION, Version.parse)

NOVA_FAULT: Schema = {
    "description": 'Nova fault: {"<faultName>": {"code": <status>, "message": "..."}}',
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "additionalProperties": {
        "type": "object",
        "properties": {"code": {"type": "integer"}, "message": {"type": "string"}},
        "required": ["code", "message"],
    },
}


# ---- bodies the handlers check in code rather than with a schema module ----------------------

# POST /servers/{id}/action: exactly one of the action schemas (each requires its own key).
def _server_action(version: Version) -> Schema:
    schemas = [*action_s.SCHEMAS.values(), *deferred_s.SCHEMAS.values(), *admin_action_s.SCHEMAS.values(),
               *extras_s.SECURITY_GROUP_ACTIONS.values(), *live_s.SCHEMAS.values()]
    chosen = [s for s in (vs.for_version(version) for vs in schemas) if s is not None]
    return {"oneOf": chosen}


_FLAVOR_ACTION: Schema = {"oneOf": [flavor_s.add_tenant_access, flavor_s.remove_tenant_access]}


def _services_update(version: Version) -> Schema:
    if version >= v("2.53"):
        return service_s.update_v253
    return service_s.update_v211 if version >= v("2.11") else service_s.update


# ---- the operation table ----------------------------------------------------------------------

S = "/v2.1/servers/{server_id}"
F = "/v2.1/flavors/{flavor_id}"
Q = "/v2.1/os-quota-sets/{project_id}"
H = "/v2.1/os-hypervisors"
AG = "/v2.1/os-aggregates"
_HYP_QUERY = ("limit", "marker", "hypervisor_hostname_pattern", "with_servers")

COMPUTE_OPS: tuple[Op, ...] = (
    op("GET", "/v2.1/servers", "List servers", query=server_s.INDEX_QUERY),
    op("POST", "/v2.1/servers", "Create server", body=server_s.CREATE, status=202),
    op("GET", "/v2.1/servers/detail", "List servers with details", query=server_s.INDEX_QUERY),
    op("GET", S, "Show server"),
    op("PUT", S, "Update server", body=server_s.UPDATE),
    op("DELETE", S, "Delete server", status=204),
    op("POST", f"{S}/action", "Server action", body=_server_action, status=202),
    op("GET", f"{S}/metadata", "List server metadata"),
    op("POST", f"{S}/metadata", "Merge server metadata", body=md_s.create),
    op("PUT", f"{S}/metadata", "Replace server metadata", body=md_s.update_all),
    op("GET", f"{S}/metadata/{{key}}", "Show server metadata item"),
    op("PUT", f"{S}/metadata/{{key}}", "Set server metadata item", body=md_s.update),
    op("DELETE", f"{S}/metadata/{{key}}", "Delete server metadata item", status=204),
    op("GET", f"{S}/tags", "List server tags", since="2.26"),
    op("PUT", f"{S}/tags", "Replace server tags", body=tag_s.update_all, since="2.26"),
    op("DELETE", f"{S}/tags", "Delete all server tags", status=204, since="2.26"),
    op("GET", f"{S}/tags/{{tag}}", "Check server tag", status=204, since="2.26"),
    op("PUT", f"{S}/tags/{{tag}}", "Add server tag", status=201, since="2.26"),
    op("DELETE", f"{S}/tags/{{tag}}", "Delete server tag", status=204, since="2.26"),
    op("GET", f"{S}/os-instance-actions", "List instance actions", query=ia_s.INDEX_QUERY),
    op("GET", f"{S}/os-instance-actions/{{request_id}}", "Show instance action"),
    op("GET", f"{S}/diagnostics", "Server diagnostics", admin=True),
    op("GET", f"{S}/ips", "List server addresses"),
    op("GET", f"{S}/ips/{{network}}", "Show server addresses of a network"),
    op("GET", f"{S}/os-server-password", "Show server password"),
    op("DELETE", f"{S}/os-server-password", "Clear server password", status=204),
    op("GET", f"{S}/migrations", "List in-progress live migrations", since="2.23", admin=True),
    op("GET", f"{S}/migrations/{{migration_id}}", "Show an in-progress live migration", since="2.23", admin=True),
    op("POST", f"{S}/migrations/{{migration_id}}/action", "Force-complete a live migration",
       body=live_s.force_complete_schema, status=202, since="2.22", admin=True),
    op("DELETE", f"{S}/migrations/{{migration_id}}", "Abort a live migration", status=202, since="2.24", admin=True),
    op("GET", "/v2.1/os-migrations", "List migrations", query=migration_s.INDEX_QUERY, admin=True),
    # Nova's deprecated image proxy (to 2.35) and image metadata (to 2.38).
    op("GET", "/v2.1/images", "List images (proxy)", query=cimage_s.index_query, until="2.35"),
    op("GET", "/v2.1/images/detail", "List images with details (proxy)", query=cimage_s.index_query, until="2.35"),
    op("GET", "/v2.1/images/{image_id}", "Show image (proxy)", until="2.35"),
    op("DELETE", "/v2.1/images/{image_id}", "Delete image (proxy)", status=204, until="2.35"),
    op("DELETE", "/v2.1/images/", "Delete image with a blank id (proxy): always 404", status=404, until="2.35"),
    op("GET", "/v2.1/images/{image_id}/metadata", "List image metadata (proxy)", until="2.38"),
    op("POST", "/v2.1/images/{image_id}/metadata", "Merge image metadata (proxy)", body=cimage_s.create_metadata,
       until="2.38"),
    op("PUT", "/v2.1/images/{image_id}/metadata", "Replace image metadata (proxy)",
       body=cimage_s.update_all_metadata, until="2.38"),
    op("GET", "/v2.1/images/{image_id}/metadata/{key}", "Show image metadata item (proxy)", until="2.38"),
    op("PUT", "/v2.1/images/{image_id}/metadata/{key}", "Set image metadata item (proxy)", body=cimage_s.update_item,
       until="2.38"),
    op("DELETE", "/v2.1/images/{image_id}/metadata/{key}", "Delete image metadata item (proxy)", status=204,
       until="2.38"),
    op("GET", "/v2.1/flavors", "List flavors", query=flavor_s.LIST_QUERY),
    op("POST", "/v2.1/flavors", "Create flavor", body=flavor_s.CREATE, admin=True),
    op("GET", "/v2.1/flavors/detail", "List flavors with details", query=flavor_s.LIST_QUERY),
    op("GET", F, "Show flavor"),
    op("PUT", F, "Update flavor description", body=flavor_s.update, since="2.55", admin=True),
    op("DELETE", F, "Delete flavor", status=202, admin=True),
    op("POST", f"{F}/action", "Flavor access action", body=_FLAVOR_ACTION, admin=True),
    op("GET", f"{F}/os-flavor-access", "List flavor access", admin=True),
    op("GET", f"{F}/os-extra_specs", "List flavor extra specs"),
    op("POST", f"{F}/os-extra_specs", "Create flavor extra specs", body=flavor_s.extra_specs_create, admin=True),
    op("GET", f"{F}/os-extra_specs/{{key}}", "Show flavor extra spec"),
    op("PUT", f"{F}/os-extra_specs/{{key}}", "Update flavor extra spec", body=flavor_s.extra_spec_update, admin=True),
    op("DELETE", f"{F}/os-extra_specs/{{key}}", "Delete flavor extra spec", admin=True),
    op("GET", "/v2.1/os-keypairs", "List keypairs", query=keypair_s.INDEX_QUERY),
    op("POST", "/v2.1/os-keypairs", "Create or import keypair", body=keypair_s.CREATE),
    op("GET", "/v2.1/os-keypairs/{name}", "Show keypair", query=keypair_s.ITEM_QUERY),
    op("DELETE", "/v2.1/os-keypairs/{name}", "Delete keypair", status=202, query=keypair_s.ITEM_QUERY),
    op("GET", "/v2.1/os-server-groups", "List server groups", query=group_s.INDEX_QUERY),
    op("POST", "/v2.1/os-server-groups", "Create server group", body=group_s.CREATE),
    op("GET", "/v2.1/os-server-groups/{group_id}", "Show server group"),
    op("DELETE", "/v2.1/os-server-groups/{group_id}", "Delete server group", status=204),
    op("GET", "/v2.1/limits", "Show rate and absolute limits", query=quota_s.LIMITS_QUERY),
    op("GET", Q, "Show quotas", query=quota_s.QUOTA_QUERY),
    op("PUT", Q, "Update quotas", body=quota_s.quota_set_update_for, query=quota_s.QUOTA_QUERY, admin=True),
    op("DELETE", Q, "Revert quotas to defaults", status=202, query=quota_s.QUOTA_QUERY, admin=True),
    op("GET", f"{Q}/defaults", "Show default quotas"),
    op("GET", f"{Q}/detail", "Show quota usage", query=quota_s.QUOTA_QUERY),
    op("GET", "/v2.1/os-quota-class-sets/{class_name}", "Show quota class", admin=True),
    op("PUT", "/v2.1/os-quota-class-sets/{class_name}", "Update quota class", body=quota_s.quota_class_update_for, admin=True),
    op("GET", "/v2.1/os-availability-zone", "List availability zones"),
    op("GET", "/v2.1/os-availability-zone/detail", "List availability zones with hosts", admin=True),
    op("GET", "/v2.1/os-services", "List compute services", query=("host", "binary"), admin=True),
    op("PUT", "/v2.1/os-services/{service_id}", "Update compute service", body=_services_update, admin=True),
    op("DELETE", "/v2.1/os-services/{service_id}", "Delete compute service", status=204, admin=True),
    op("GET", H, "List hypervisors", query=_HYP_QUERY, admin=True),
    op("GET", f"{H}/detail", "List hypervisors with details", query=_HYP_QUERY, admin=True),
    op("GET", f"{H}/statistics", "Hypervisor statistics", admin=True, until="2.87"),
    op("GET", f"{H}/{{hypervisor_id}}", "Show hypervisor", query=((v("2.1"), ()), (v("2.53"), ("with_servers",))), admin=True),
    op("GET", f"{H}/{{hypervisor_id}}/uptime", "Show hypervisor uptime", admin=True),
    op("GET", f"{H}/{{pattern}}/search", "Search hypervisors", admin=True, until="2.52"),
    op("GET", f"{H}/{{pattern}}/servers", "List servers of hypervisors", admin=True, until="2.52"),
    op("GET", AG, "List host aggregates", admin=True),
    op("POST", AG, "Create host aggregate", body=aggregate_s.create, admin=True),
    op("GET", f"{AG}/{{aggregate_id}}", "Show host aggregate", admin=True),
    op("PUT", f"{AG}/{{aggregate_id}}", "Update host aggregate", body=aggregate_s.update, admin=True),
    op("DELETE", f"{AG}/{{aggregate_id}}", "Delete host aggregate", admin=True),
    op("POST", f"{AG}/{{aggregate_id}}/action", "Host aggregate action (add_host, remove_host, set_metadata)",
       body={"oneOf": list(aggregate_s.ACTIONS.values())}, admin=True),
    op("GET", "/v2.1/os-hosts", "List hosts", query=("zone",), admin=True, until="2.42"),
    op("GET", "/v2.1/os-hosts/{host_name}", "Show host resources", admin=True, until="2.42"),
    op("PUT", "/v2.1/os-hosts/{host_name}", "Update host (not supported: 501)", body=extras_s.host_update, admin=True,
       until="2.42"),
    *(op("GET", f"/v2.1/os-hosts/{{host_name}}/{a}", f"Host {a} (not supported: 501)", admin=True, until="2.42")
      for a in ("reboot", "shutdown", "startup")),
    op("GET", "/v2.1/os-simple-tenant-usage", "List usage of all projects", admin=True,
       query=((v("2.1"), extras_s.USAGE_LIST_QUERY), (v("2.40"), extras_s.USAGE_LIST_QUERY + extras_s.PAGING))),
    op("GET", "/v2.1/os-simple-tenant-usage/", "Show usage of a blank project id: always 404", status=404),
    op("GET", "/v2.1/os-simple-tenant-usage/{tenant_id}", "Show a project's usage",
       query=((v("2.1"), extras_s.USAGE_SHOW_QUERY), (v("2.40"), extras_s.USAGE_SHOW_QUERY + extras_s.PAGING))),
    op("GET", "/v2.1/os-instance_usage_audit_log", "List instance usage audit logs", admin=True),
    op("GET", "/v2.1/os-instance_usage_audit_log/{before_timestamp}", "Show instance usage audit log", admin=True),
    op("POST", "/v2.1/os-server-external-events", "Run server external events", body=extras_s.EVENTS),
    op("GET", f"{S}/os-security-groups", "List a server's security groups"),
    op("GET", f"{S}/os-interface", "List port interfaces"),
    op("POST", f"{S}/os-interface", "Create interface (attach a port or a network)", body=iface_s.ATTACH),
    op("GET", f"{S}/os-interface/{{port_id}}", "Show port interface details"),
    op("DELETE", f"{S}/os-interface/{{port_id}}", "Detach interface", status=202),
    op("GET", "/v2.1/extensions", "List extensions (frozen)"),
    op("GET", "/v2.1/extensions/{alias}", "Show extension (frozen)"),
    *(op(m, "/v2.1/os-security-groups/", f"{m.capitalize()} a security group with a blank id (proxy): always 404",
         status=404, until="2.35") for m in ("GET", "PUT", "DELETE")),
    op("DELETE", "/v2.1/os-security-group-rules/", "Delete a security group rule with a blank id (proxy): always 404",
       status=404, until="2.35"),
    op("GET", "/v2.1/os-security-groups", "List security groups (proxy)", until="2.35"),
    op("POST", "/v2.1/os-security-groups", "Create security group (proxy)", until="2.35"),
    op("GET", "/v2.1/os-security-groups/{group_id}", "Show security group (proxy)", until="2.35"),
    op("PUT", "/v2.1/os-security-groups/{group_id}", "Update security group (proxy)", until="2.35"),
    op("DELETE", "/v2.1/os-security-groups/{group_id}", "Delete security group (proxy)", status=202, until="2.35"),
    op("POST", "/v2.1/os-security-group-rules", "Create security group rule (proxy)", until="2.35"),
    op("DELETE", "/v2.1/os-security-group-rules/{rule_id}", "Delete security group rule (proxy)", status=202,
       until="2.35"),
    op("GET", "/v2.1/os-floating-ip-pools", "List floating IP pools (proxy)", until="2.35"),
    op("GET", "/v2.1/os-floating-ips", "List floating IPs (proxy)", until="2.35"),
    op("POST", "/v2.1/os-floating-ips", "Create (allocate) floating IP (proxy)", until="2.35"),
    op("GET", "/v2.1/os-floating-ips/{fip_id}", "Show floating IP (proxy)", until="2.35"),
    op("DELETE", "/v2.1/os-floating-ips/{fip_id}", "Delete (deallocate) floating IP (proxy)", status=202,
       until="2.35"),
    op("GET", "/v2.1/os-networks", "List networks (proxy)", until="2.35"),
    op("GET", "/v2.1/os-networks/{network_id}", "Show network details (proxy)", until="2.35"),
    op("GET", "/v2.1/os-tenant-networks", "List project networks (proxy)", until="2.35"),
    op("GET", "/v2.1/os-tenant-networks/{network_id}", "Show project network details (proxy)", until="2.35"),
    # A server's volumes: tag in the body from 2.49 (shown from 2.70), delete_on_termination from 2.79.
    op("GET", f"{S}/os-volume_attachments", "List volume attachments", query=("limit", "offset")),
    op("POST", f"{S}/os-volume_attachments", "Attach a volume to a server", body=attach_s.CREATE),
    op("GET", f"{S}/os-volume_attachments/{{volume_id}}", "Show a volume attachment"),
    op("PUT", f"{S}/os-volume_attachments/{{volume_id}}", "Update a volume attachment (swap refused)",
       body=attach_s.UPDATE, status=202),
    op("DELETE", f"{S}/os-volume_attachments/{{volume_id}}", "Detach a volume from a server", status=202),
    # Nova's deprecated volume and snapshot proxies (to 2.35).
    *(op(m, f"/v2.1/{res}/", f"{w} a {noun} with a blank id (proxy): always 404", status=404, until="2.35")
      for res, noun in (("os-volumes", "volume"), ("os-snapshots", "snapshot"))
      for m, w in (("GET", "Show"), ("DELETE", "Delete"))),
    op("GET", "/v2.1/os-volumes", "List volumes (proxy)", query=("limit", "offset"), until="2.35"),
    op("GET", "/v2.1/os-volumes/detail", "List volumes with details (proxy)", query=("limit", "offset"), until="2.35"),
    op("POST", "/v2.1/os-volumes", "Create volume (proxy)", body=vproxy_s.CREATE, until="2.35"),
    op("GET", "/v2.1/os-volumes/{volume_id}", "Show volume (proxy)", until="2.35"),
    op("DELETE", "/v2.1/os-volumes/{volume_id}", "Delete volume (proxy)", status=202, until="2.35"),
    op("GET", "/v2.1/os-snapshots", "List snapshots (proxy)", query=("limit", "offset"), until="2.35"),
    op("GET", "/v2.1/os-snapshots/detail", "List snapshots with details (proxy)", query=("limit", "offset"),
       until="2.35"),
    op("POST", "/v2.1/os-snapshots", "Create snapshot (proxy)", body=vproxy_s.SNAPSHOT_CREATE, until="2.35"),
    op("GET", "/v2.1/os-snapshots/{snapshot_id}", "Show snapshot (proxy)", until="2.35"),
    op("DELETE", "/v2.1/os-snapshots/{snapshot_id}", "Delete snapshot (proxy)", status=202, until="2.35"),
)

FAMILY = Family("compute", "/compute", "Cumulo Compute API (Nova v2.1)", NOVA_FAULT, COMPUTE_OPS,
                microversions=MICROVERSIONS)

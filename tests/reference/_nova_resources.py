"""Nova response shapes other than servers: flavors, keypairs, limits, quotas, availability zones,
services, hypervisors, instance actions, console output, server metadata and tags.

Each table cites its api-ref section (openstack/nova api-ref/source/<file>.inc, "Response") and
the parameters.yaml min_version/max_version that put a field in or out of a version.
"""

from __future__ import annotations

from collections.abc import Callable

from ._common import (
    BOOL,
    INT,
    NEXT_LINKS,
    NULL,
    NUMBER,
    STR,
    TS,
    UUID,
    Field,
    Schema,
    Version,
    array,
    build,
    enum,
    envelope,
    links,
    nullable,
    obj,
    str_map,
)

Builder = Callable[[Version, bool], Schema]

# --- flavors [flavors.inc] -----------------------------------------------------------------------

# "List Flavors": id, name, links; description from 2.55 (flavor_description_resp, nullable).
_FLAVOR_BRIEF_FIELDS = (
    Field("id", STR),
    Field("name", STR),
    Field("links", links("self", "bookmark")),
    Field("description", nullable(STR), min="2.55"),
)

# "Show Flavor Details" / "List Flavors With Details".
_FLAVOR_FIELDS = (
    Field("id", STR),
    Field("name", STR),
    Field("links", links("self", "bookmark")),
    Field("ram", INT),
    Field("disk", INT),
    Field("vcpus", INT),
    # flavor_swap: "" stood for 0 until 2.75, an integer from 2.75.
    Field("swap", {"anyOf": [INT, {"const": ""}]}, max="2.74"),
    Field("swap", INT, min="2.75"),
    Field("OS-FLV-EXT-DATA:ephemeral", INT),
    # flavor_disabled (max 2.101): always false, an artifact of the v2 API.
    Field("OS-FLV-DISABLED:disabled", BOOL),
    # flavor_rxtx_factor (max 2.101): a float (defaults to 1.0); Nova prints "" for an unset one.
    Field("rxtx_factor", {"anyOf": [NUMBER, {"const": ""}]}),
    Field("os-flavor-access:is_public", BOOL),
    Field("description", nullable(STR), min="2.55"),
    # extra_specs_2_61: policy "os_compute_api:os-flavor-extra-specs:index" defaults to
    # PROJECT_READER_OR_ADMIN, so every caller sees it: required.
    Field("extra_specs", str_map(STR), min="2.61"),
)


def flavor_entry(v: Version, admin: bool) -> Schema:
    return build(_FLAVOR_FIELDS, v, admin)


def flavor_list_entry(v: Version, admin: bool) -> Schema:
    return build(_FLAVOR_BRIEF_FIELDS, v, admin)


# --- keypairs [os-keypairs.inc] ------------------------------------------------------------------

_KEYPAIR_TYPE = enum("ssh", "x509")
# "List Keypairs": each item is {"keypair": {name, public_key, fingerprint, type(2.2)}}.
_KEYPAIR_LIST_FIELDS = (
    Field("name", STR),
    Field("public_key", STR),
    Field("fingerprint", STR),
    Field("type", _KEYPAIR_TYPE, min="2.2"),
)
# "Import (or create) Keypair": + user_id; private_key only when Nova generated the key.
_KEYPAIR_CREATE_FIELDS = (
    *_KEYPAIR_LIST_FIELDS,
    Field("user_id", STR),
    Field("private_key", STR, required=False),
)
# "Show Keypair Details": + user_id, created_at, deleted (always false), deleted_at and
# updated_at (always null), id (integer).
_KEYPAIR_SHOW_FIELDS = (
    *_KEYPAIR_LIST_FIELDS,
    Field("user_id", STR),
    Field("created_at", TS),
    Field("deleted", {"const": False}),
    Field("deleted_at", NULL),
    Field("id", INT),
    Field("updated_at", NULL),
)


def keypair_create(v: Version, admin: bool, private_key: bool | None = None) -> Schema:
    s = build(_KEYPAIR_CREATE_FIELDS, v, admin)
    if private_key is True:
        s["required"].append("private_key")
    elif private_key is False:
        del s["properties"]["private_key"]
    return envelope("keypair", s)


def keypairs(v: Version, admin: bool) -> Schema:
    item = envelope("keypair", build(_KEYPAIR_LIST_FIELDS, v, admin))
    if v >= (2, 35):  # keypair_links: min_version 2.35 (pagination)
        return envelope("keypairs", array(item), keypairs_links=NEXT_LINKS)
    return envelope("keypairs", array(item))


# --- limits [limits.inc "Show Rate And Absolute Limits"] -----------------------------------------

_ABSOLUTE_FIELDS = (
    Field("maxServerMeta", INT),
    Field("maxTotalCores", INT),
    Field("maxTotalInstances", INT),
    Field("maxTotalKeypairs", INT),
    Field("maxTotalRAMSize", INT),
    Field("maxServerGroups", INT),
    Field("maxServerGroupMembers", INT),
    Field("totalCoresUsed", INT),
    Field("totalInstancesUsed", INT),
    Field("totalRAMUsed", INT),
    Field("totalServerGroupsUsed", INT),
    # max_version 2.35: the nova-network proxies went away in 2.36.
    Field("maxSecurityGroupRules", INT, max="2.35"),
    Field("maxSecurityGroups", INT, max="2.35"),
    Field("maxTotalFloatingIps", INT, max="2.35"),
    Field("totalFloatingIpsUsed", INT, max="2.35"),
    Field("totalSecurityGroupsUsed", INT, max="2.35"),
    # image_metadata_items: dropped from 2.39.
    Field("maxImageMeta", INT, max="2.38"),
    # injected_files / injected_file_content_bytes: dropped from 2.57.
    Field("maxPersonality", INT, max="2.56"),
    Field("maxPersonalitySize", INT, max="2.56"),
)


def limits(v: Version, admin: bool) -> Schema:
    # "rate": an empty list for backwards compatibility.
    inner = obj({"absolute": build(_ABSOLUTE_FIELDS, v, admin), "rate": array(NULL, maxItems=0)})
    return envelope("limits", inner)


# --- quota sets [os-quota-sets.inc] --------------------------------------------------------------

_QUOTA_NAMES = (
    Field("cores", INT),
    Field("instances", INT),
    Field("key_pairs", INT),
    Field("metadata_items", INT),
    Field("ram", INT),
    Field("server_groups", INT),
    Field("server_group_members", INT),
    # max_version 2.35 (fixed_ips_quota, floating_ips, security_group*_quota). "networks" is a
    # nova-network-only quota (networks_quota_set_optional), absent with Neutron: not listed.
    Field("fixed_ips", INT, max="2.35"),
    Field("floating_ips", INT, max="2.35"),
    Field("security_group_rules", INT, max="2.35"),
    Field("security_groups", INT, max="2.35"),
    # max_version 2.56 (injected_file*).
    Field("injected_file_content_bytes", INT, max="2.56"),
    Field("injected_file_path_bytes", INT, max="2.56"),
    Field("injected_files", INT, max="2.56"),
)
# "Show The Detail of Quota": each value is {in_use, limit, reserved} (*_quota_details).
_QUOTA_DETAIL = obj({"in_use": INT, "limit": INT, "reserved": INT})


def quota_set(v: Version, admin: bool, *, detail: bool = False, with_id: bool = True) -> Schema:
    fields = [Field(f.name, _QUOTA_DETAIL if detail else f.schema, f.min, f.max) for f in _QUOTA_NAMES]
    if with_id:  # quota_tenant_or_user_id_body: in show, defaults and detail; not in update.
        fields.append(Field("id", STR))
    return envelope("quota_set", build(fields, v, admin))


# --- availability zones [os-availability-zone.inc] -----------------------------------------------

_ZONE_STATE = obj({"available": BOOL})
# "Get Availability Zone Information": hosts is always null.
_AZ = obj({"zoneName": STR, "zoneState": _ZONE_STATE, "hosts": NULL})
# "Get Detailed Availability Zone Information": hosts -> {host: {binary: {active, available, updated_at}}}.
_AZ_SERVICE = obj({"active": BOOL, "available": BOOL, "updated_at": nullable(TS)})
_AZ_DETAIL = obj(
    {
        "zoneName": STR,
        "zoneState": _ZONE_STATE,
        "hosts": nullable({"type": "object", "additionalProperties": str_map(_AZ_SERVICE)}),
    }
)

# --- services [os-services.inc "List Compute Services"] -----------------------------------------

_SERVICE_FIELDS = (
    Field("id", INT, max="2.52"),  # service_id_body_2_52
    Field("id", UUID, min="2.53"),  # service_id_body_2_53
    Field("binary", STR),
    Field("disabled_reason", nullable(STR)),
    Field("host", STR),
    Field("state", enum("up", "down")),
    Field("status", enum("enabled", "disabled")),
    Field("updated_at", nullable(TS)),
    Field("zone", STR),
    Field("forced_down", BOOL, min="2.11"),  # forced_down_2_11
)

# --- hypervisors [os-hypervisors.inc] ------------------------------------------------------------

# hypervisor_servers (min 2.53): only when ?with_servers=true and the host has servers; from 2.75
# an empty list when asked for and there are none.
_HYP_SERVERS = array(obj({"uuid": UUID, "name": STR}))
_HYP_BRIEF = (
    Field("id", INT, max="2.52"),  # hypervisor_id_body
    Field("id", UUID, min="2.53"),  # hypervisor_id_body_uuid
    Field("hypervisor_hostname", STR),
    Field("state", enum("up", "down")),
    Field("status", enum("enabled", "disabled")),
    Field("servers", _HYP_SERVERS, min="2.53", required=False),
)
_HYP_SERVICE = (
    Field("host", STR),
    Field("id", INT, max="2.52"),  # service_id_body_2_52
    Field("id", UUID, min="2.53"),  # service_id_body_2_53
    Field("disabled_reason", nullable(STR)),  # service_disable_reason
)


def _hyp_detail_fields(v: Version, admin: bool) -> tuple[Field, ...]:
    return (
        *_HYP_BRIEF,
        Field("hypervisor_type", STR),
        Field("hypervisor_version", INT),
        Field("host_ip", nullable(STR)),  # an IP address field, nullable in Nova
        Field("service", build(_HYP_SERVICE, v, admin)),
        # cpu_info: a JSON string before 2.28, an object from 2.28 (max 2.87 for all below).
        Field("cpu_info", STR, max="2.27"),
        Field("cpu_info", {"type": "object"}, min="2.28"),
        Field("current_workload", INT),
        Field("disk_available_least", nullable(INT)),
        Field("free_disk_gb", INT),
        Field("free_ram_mb", INT),
        Field("local_gb", INT),
        Field("local_gb_used", INT),
        Field("memory_mb", INT),
        Field("memory_mb_used", INT),
        Field("running_vms", INT),
        Field("vcpus", INT),
        Field("vcpus_used", INT),
    )


def hypervisors(v: Version, admin: bool, detail: bool) -> Schema:
    item = build(_hyp_detail_fields(v, admin) if detail else _HYP_BRIEF, v, admin)
    if v >= (2, 33):  # hypervisor_links: min_version 2.33
        return envelope("hypervisors", array(item), hypervisors_links=NEXT_LINKS)
    return envelope("hypervisors", array(item))


# "Show Hypervisor Statistics": deployment-wide sums.
_HYP_STATS = obj(
    {
        name: INT
        for name in (
            "count", "current_workload", "disk_available_least", "free_disk_gb", "free_ram_mb",
            "local_gb", "local_gb_used", "memory_mb", "memory_mb_used", "running_vms", "vcpus",
            "vcpus_used",
        )
    }
)

# --- instance actions [os-instance-actions.inc] --------------------------------------------------

_ACTION_FIELDS = (
    Field("action", STR),
    Field("instance_uuid", UUID),
    Field("message", nullable(STR)),
    Field("project_id", nullable(STR)),  # null only for nova-manage initiated actions
    Field("request_id", STR),
    Field("start_time", TS),
    Field("user_id", nullable(STR)),
    Field("updated_at", nullable(TS), min="2.58"),  # updated_instance_action
)
# events.*: traceback and host for admins ("os_compute_api:os-instance-actions:events" = ADMIN),
# hostId for everyone from 2.62. (details is 2.84, beyond Cumulo's maximum.)
_EVENT_FIELDS = (
    Field("event", STR),
    Field("start_time", TS),
    Field("finish_time", nullable(TS)),
    Field("result", nullable(STR)),
    Field("traceback", nullable(STR), admin_only=True),
    Field("hostId", STR, min="2.62"),
    Field("host", STR, min="2.62", admin_only=True),
)


def instance_action(v: Version, admin: bool) -> Schema:
    events = array(build(_EVENT_FIELDS, v, admin))
    # instance_action_events_2_50: admin only up to 2.50; instance_action_events_2_51: everyone.
    fields = (*_ACTION_FIELDS, Field("events", events, admin_only=v < (2, 51)))
    return envelope("instanceAction", build(fields, v, admin))


def instance_actions(v: Version, admin: bool) -> Schema:
    item = build(_ACTION_FIELDS, v, admin)
    if v >= (2, 58):  # instance_actions_next_links: min_version 2.58
        return envelope("instanceActions", array(item), links=NEXT_LINKS)
    return envelope("instanceActions", array(item))


# --- console output, metadata, tags ------------------------------------------------------------

# [servers-action-console-output.inc]: {"output": "..."}.
_CONSOLE = obj({"output": STR})
# [metadata.inc]: {"metadata": {k: v}}; a single item is {"meta": {k: v}}.
_METADATA = envelope("metadata", str_map(STR))
_META_ITEM = envelope("meta", {**str_map(STR), "minProperties": 1, "maxProperties": 1})
# [os-server-tags.inc] (available since 2.26): {"tags": [...]}.
_TAGS = envelope("tags", array(STR, maxItems=50))

# --- server groups [os-server-groups.inc] ----------------------------------------------------------
# "Show Server Group Details" / "Create" / "List": id, name, members; policies (a one-item list)
# and metadata (always {}) until 2.63; project_id and user_id from 2.13; policy and rules from 2.64.
_POLICIES_21 = ("anti-affinity", "affinity")
_POLICIES_215 = (*_POLICIES_21, "soft-anti-affinity", "soft-affinity")


def _server_group_fields(v: Version) -> tuple[Field, ...]:
    allowed = _POLICIES_215 if v >= (2, 15) else _POLICIES_21
    return (
        Field("id", UUID),
        Field("name", STR),
        Field("members", array(UUID)),
        Field("policies", array(enum(*allowed), minItems=1, maxItems=1), max="2.63"),
        Field("metadata", obj({}), max="2.63"),
        Field("project_id", STR, min="2.13"),
        Field("user_id", STR, min="2.13"),
        Field("policy", enum(*_POLICIES_215), min="2.64"),
        Field("rules", obj({"max_server_per_host": INT}, optional=["max_server_per_host"]), min="2.64"),
    )


def server_group_entry(v: Version, admin: bool) -> Schema:
    return build(_server_group_fields(v), v, admin)


RESOURCES: dict[str, Builder] = {
    "server_group": lambda v, a: envelope("server_group", server_group_entry(v, a)),
    "server_groups": lambda v, a: envelope("server_groups", array(server_group_entry(v, a))),
    "flavor": lambda v, a: envelope("flavor", flavor_entry(v, a)),
    "flavor_detail_entry": flavor_entry,
    "flavor_list_entry": flavor_list_entry,
    "flavors": lambda v, a: envelope("flavors", array(flavor_list_entry(v, a)), flavors_links=NEXT_LINKS),
    "flavors_detail": lambda v, a: envelope("flavors", array(flavor_entry(v, a)), flavors_links=NEXT_LINKS),
    "keypair": lambda v, a: envelope("keypair", build(_KEYPAIR_SHOW_FIELDS, v, a)),
    "keypair_list_entry": lambda v, a: envelope("keypair", build(_KEYPAIR_LIST_FIELDS, v, a)),
    "keypairs": keypairs,
    "keypair_create": keypair_create,
    "keypair_generate": lambda v, a: keypair_create(v, a, private_key=True),
    "keypair_import": lambda v, a: keypair_create(v, a, private_key=False),
    "limits": limits,
    "quota_set": quota_set,
    "quota_set_defaults": quota_set,
    "quota_set_detail": lambda v, a: quota_set(v, a, detail=True),
    "quota_set_update": lambda v, a: quota_set(v, a, with_id=False),
    "availability_zones": lambda v, a: envelope("availabilityZoneInfo", array(_AZ)),
    "availability_zones_detail": lambda v, a: envelope("availabilityZoneInfo", array(_AZ_DETAIL)),
    "service_list_entry": lambda v, a: build(_SERVICE_FIELDS, v, a),
    "services": lambda v, a: envelope("services", array(build(_SERVICE_FIELDS, v, a))),
    "hypervisor_list_entry": lambda v, a: build(_HYP_BRIEF, v, a),
    "hypervisors": lambda v, a: hypervisors(v, a, detail=False),
    "hypervisors_detail": lambda v, a: hypervisors(v, a, detail=True),
    "hypervisor": lambda v, a: envelope("hypervisor", build(_hyp_detail_fields(v, a), v, a)),
    "hypervisor_statistics": lambda v, a: envelope("hypervisor_statistics", _HYP_STATS),
    "instance_action": instance_action,
    "instance_actions": instance_actions,
    "console_output": lambda v, a: _CONSOLE,
    "server_metadata": lambda v, a: _METADATA,
    "server_metadata_item": lambda v, a: _META_ITEM,
    "server_tags": lambda v, a: _TAGS,
}

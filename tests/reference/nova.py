"""Nova (compute v2.1) response shapes, per microversion, from the compute API reference.

Sources: openstack/nova api-ref/source/*.inc (the "Response" parameter lists of each section) with
api-ref/source/parameters.yaml (type, min_version/max_version of each parameter), checked against
doc/api_samples/** and the view builders' documented behaviour (which fields depend on policy or
state). Section names are cited next to each table as [servers.inc "Show Server Details"] etc.

    schema(resource, version, admin=False) -> JSON Schema (draft 2020-12) of the whole body

`version` is "X.Y" in 2.1..2.79 (Cumulo's declared range). `admin` selects Nova's default-policy
admin view (OS-EXT-SRV-ATTR:*, host_status, instance-action event tracebacks and hosts).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

from ._common import (
    BOOL,
    INT,
    NEXT_LINKS,
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
    has_rels,
    link,
    links,
    nullable,
    obj,
    parse_version,
    str_map,
)
from ._nova_images import RESOURCES as _IMAGE_RESOURCES
from ._nova_resources import RESOURCES as _OTHER_RESOURCES

MIN_VERSION = "2.1"
MAX_VERSION = "2.79"

# [servers.inc "Show Server Details"] server_status: the statuses Nova maps vm/task states to.
SERVER_STATUSES = (
    "ACTIVE", "BUILD", "DELETED", "ERROR", "HARD_REBOOT", "MIGRATING", "PASSWORD", "PAUSED",
    "REBOOT", "REBUILD", "RESCUE", "RESIZE", "REVERT_RESIZE", "SHELVED", "SHELVED_OFFLOADED",
    "SHUTOFF", "SOFT_DELETED", "SUSPENDED", "UNKNOWN", "VERIFY_RESIZE",
)
# parameters.yaml "progress": only shown for these statuses.
PROGRESS_STATUSES = ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING")
# parameters.yaml "fault": only displayed when the status is ERROR or DELETED.
FAULT_STATUSES = ("ERROR", "DELETED")
# Nova's vm_states and task_states (nova.compute.vm_states / task_states).
VM_STATES = (
    "active", "building", "paused", "suspended", "stopped", "rescued", "resized", "soft-delete",
    "deleted", "error", "shelved", "shelved_offloaded",
)
TASK_STATES = (
    "scheduling", "block_device_mapping", "networking", "spawning", "image_snapshot",
    "image_snapshot_pending", "image_pending_upload", "image_uploading", "image_backup",
    "updating_password", "resize_prep", "resize_migrating", "resize_migrated", "resize_finish",
    "resize_reverting", "resize_confirming", "rebooting", "reboot_pending", "reboot_started",
    "rebooting_hard", "reboot_pending_hard", "reboot_started_hard", "pausing", "unpausing",
    "suspending", "resuming", "powering-off", "powering-on", "rescuing", "unrescuing", "rebuilding",
    "rebuild_block_device_mapping", "rebuild_spawning", "migrating", "deleting", "soft-deleting",
    "restoring", "shelving", "shelving_image_pending_upload", "shelving_image_uploading",
    "shelving_offloading", "unshelving",
)
# parameters.yaml "OS-EXT-STS:power_state": 0 NOSTATE, 1 RUNNING, 3 PAUSED, 4 SHUTDOWN, 6 CRASHED, 7 SUSPENDED.
POWER_STATES = (0, 1, 3, 4, 6, 7)

# --- server pieces ----------------------------------------------------------------------------

# [ips.inc] / servers.inc "addresses": network name -> list of address objects.
_ADDRESS = obj(
    {
        "addr": STR,
        "version": enum(4, 6),
        "OS-EXT-IPS:type": enum("fixed", "floating"),
        "OS-EXT-IPS-MAC:mac_addr": STR,
    }
)
ADDRESSES: Schema = {"type": "object", "additionalProperties": array(_ADDRESS)}

# "flavor_server": before 2.47 the id and a bookmark link.
_FLAVOR_REF = obj({"id": STR, "links": links("bookmark")})
# From 2.47: flavor_cpus_2_47, flavor_ram_2_47, flavor_disk_2_47, flavor_ephem_disk_2_47,
# flavor_swap_2_47, flavor_original_name, extra_specs_2_47. extra_specs is policy-gated
# ("os_compute_api:servers:show:flavor-extra-specs", default PROJECT_READER_OR_ADMIN), so under
# the default policy every caller who can see the server sees it: required.
_FLAVOR_EMBEDDED = obj(
    {
        "vcpus": INT,
        "ram": INT,
        "disk": INT,
        "ephemeral": INT,
        "swap": INT,
        "original_name": STR,
        "extra_specs": str_map(STR),
    }
)
# "image": the id and a bookmark link, or "" for a server booted from a volume.
_IMAGE_REF: Schema = {"anyOf": [{"const": ""}, obj({"id": UUID, "links": links("bookmark")})]}

_VOLUME_21 = obj({"id": STR})
# os-extended-volumes:volumes_attached.delete_on_termination: min_version 2.3.
_VOLUME_23 = obj({"id": STR, "delete_on_termination": BOOL})

# "fault": code, created, message; details only when non-empty and (admin or code != 500).
_FAULT = obj({"code": INT, "created": TS, "message": STR, "details": STR}, optional=["details"])

# "security_groups" (security_groups_obj_optional): only present when the server has groups.
_SECGROUPS = array(obj({"name": STR}))

_SERVER_FIELDS: tuple[Field, ...] = (
    # [servers.inc "Show Server Details" / "List Servers Detailed"] fields for every caller.
    Field("accessIPv4", STR),
    Field("accessIPv6", STR),
    Field("addresses", ADDRESSES),
    Field("config_drive", enum("", "True")),  # config_drive_resp: "True" or ""
    Field("created", TS),
    Field("flavor", _FLAVOR_REF, max="2.46"),  # flavor_id_body_2_46 / flavor_links_2_46
    Field("flavor", _FLAVOR_EMBEDDED, min="2.47"),  # flavor_*_2_47
    Field("hostId", STR),
    Field("id", UUID),
    Field("image", _IMAGE_REF),
    Field("key_name", nullable(STR)),  # key_name_resp: null when none
    Field("links", links("self", "bookmark")),
    Field("metadata", str_map(STR)),
    Field("name", STR),
    Field("OS-DCF:diskConfig", enum("AUTO", "MANUAL")),
    Field("OS-EXT-AZ:availability_zone", STR),
    Field("OS-EXT-STS:power_state", enum(*POWER_STATES)),
    Field("OS-EXT-STS:task_state", nullable(enum(*TASK_STATES))),
    Field("OS-EXT-STS:vm_state", enum(*VM_STATES)),
    Field("os-extended-volumes:volumes_attached", array(_VOLUME_21), max="2.2"),
    Field("os-extended-volumes:volumes_attached", array(_VOLUME_23), min="2.3"),
    Field("OS-SRV-USG:launched_at", nullable(TS)),  # null until launched
    Field("OS-SRV-USG:terminated_at", nullable(TS)),
    Field("status", enum(*SERVER_STATUSES)),
    Field("tenant_id", STR),
    Field("updated", TS),
    Field("user_id", STR),
    Field("fault", _FAULT, required=False),  # see the status rules below
    Field("progress", {"type": "integer", "minimum": 0, "maximum": 100}, required=False),
    Field("security_groups", _SECGROUPS, required=False),
    Field("locked", BOOL, min="2.9"),
    Field("description", nullable(STR), min="2.19"),  # server_description_resp
    Field("tags", array(STR, maxItems=50), min="2.26"),
    Field("trusted_image_certificates", nullable(array(STR, maxItems=50)), min="2.63"),
    Field("locked_reason", nullable(STR), min="2.73"),  # locked_reason_resp
    # Admin-only by default policy ("os_compute_api:os-extended-server-attributes" = ADMIN).
    Field("OS-EXT-SRV-ATTR:host", nullable(STR), admin_only=True),
    Field("OS-EXT-SRV-ATTR:hypervisor_hostname", nullable(STR), admin_only=True),
    Field("OS-EXT-SRV-ATTR:instance_name", STR, admin_only=True),
    Field("OS-EXT-SRV-ATTR:hostname", STR, min="2.3", admin_only=True),  # server_hostname
    Field("OS-EXT-SRV-ATTR:kernel_id", nullable(STR), min="2.3", admin_only=True),
    Field("OS-EXT-SRV-ATTR:launch_index", nullable(INT), min="2.3", admin_only=True),
    Field("OS-EXT-SRV-ATTR:ramdisk_id", nullable(STR), min="2.3", admin_only=True),
    Field("OS-EXT-SRV-ATTR:reservation_id", nullable(STR), min="2.3", admin_only=True),
    Field("OS-EXT-SRV-ATTR:root_device_name", nullable(STR), min="2.3", admin_only=True),
    Field("OS-EXT-SRV-ATTR:user_data", nullable(STR), min="2.3", admin_only=True),
    # host_status: "os_compute_api:servers:show:host_status" = ADMIN (and unknown-only = ADMIN).
    Field("host_status", enum("UP", "DOWN", "MAINTENANCE", "UNKNOWN", ""), min="2.16", admin_only=True),
)

# server_groups_2_71: in GET /servers/{id} (and PUT/rebuild from 2.75) but NOT in /servers/detail.
_SHOW_ONLY_FIELDS: tuple[Field, ...] = (Field("server_groups", array(UUID, maxItems=1), min="2.71"),)


def _status_rules() -> list[Schema]:
    """fault only for ERROR/DELETED (and always for ERROR in Cumulo: issue 2 "A server in ERROR
    carries a fault"); progress exactly for the progress statuses."""

    def is_status(*statuses: str) -> Schema:
        return {"properties": {"status": {"enum": list(statuses)}}, "required": ["status"]}

    return [
        {"if": is_status(*FAULT_STATUSES), "else": {"not": {"required": ["fault"]}}},
        {"if": is_status("ERROR"), "then": {"required": ["fault"]}},
        {
            "if": is_status(*PROGRESS_STATUSES),
            "then": {"required": ["progress"]},
            "else": {"not": {"required": ["progress"]}},
        },
    ]


def server_detail_entry(version: Version, admin: bool) -> Schema:
    """One element of GET /servers/detail [servers.inc "List Servers Detailed"]."""
    s = build(_SERVER_FIELDS, version, admin)
    s["allOf"] = _status_rules()
    return s


def server_entity(version: Version, admin: bool) -> Schema:
    """The object inside GET /servers/{id} [servers.inc "Show Server Details"]."""
    s = build(_SERVER_FIELDS + _SHOW_ONLY_FIELDS, version, admin)
    s["allOf"] = _status_rules()
    return s


# [servers.inc "List Servers"]: id, name, links; servers_links only when there is a next page.
SERVER_LIST_ENTRY = obj({"id": UUID, "name": STR, "links": links("self", "bookmark")})

# [servers.inc "Create Server"]: id, links, OS-DCF:diskConfig, security_groups (the requested
# ones, or [{"name": "default"}]); adminPass unless the operator disabled instance passwords.
SERVER_CREATE = envelope(
    "server",
    obj(
        {
            "id": UUID,
            "links": links("self", "bookmark"),
            "OS-DCF:diskConfig": enum("AUTO", "MANUAL"),
            "security_groups": array(obj({"name": STR}), minItems=1),
            "adminPass": STR,
        },
        optional=["adminPass"],
    ),
)
# ... or, with return_reservation_id=true: {"reservation_id": "r-..."}.
SERVER_CREATE_RESERVATION = obj({"reservation_id": STR})

# --- version documents [versions.inc] -----------------------------------------------------------

_VERSION_STATUS = enum("CURRENT", "SUPPORTED", "DEPRECATED")
# "List All Major Versions": id, links, min_version, status, updated, version.
_VERSION_IN_LIST = obj(
    {
        "id": STR,
        "links": {**array(link(with_type=True), minItems=1), "allOf": has_rels("self")},
        "min_version": STR,
        "status": _VERSION_STATUS,
        "updated": TS,
        "version": STR,
    }
)
# "Show Details of Specific API Version": the same plus media-types.
_VERSION_DETAIL = obj(
    {
        "id": STR,
        "links": {**array(link(with_type=True), minItems=1), "allOf": has_rels("self")},
        "media-types": array(obj({"base": STR, "type": STR}), minItems=1),
        "min_version": STR,
        "status": _VERSION_STATUS,
        "updated": TS,
        "version": STR,
    }
)
VERSION_LIST = envelope("versions", array(_VERSION_IN_LIST, minItems=1))
VERSION_SHOW = envelope("version", _VERSION_DETAIL)

# --- the Nova fault body ------------------------------------------------------------------------

FAULT_NAMES = (
    "badRequest", "unauthorized", "forbidden", "itemNotFound", "badMethod", "conflictingRequest",
    "overLimit", "badMediaType", "notImplemented", "serviceUnavailable", "computeFault",
    "HTTPNotAcceptable", "notAcceptable",
)


def fault(name: str | None = None, code: int | None = None) -> Schema:
    """{"<faultName>": {"code": N, "message": "..."}} - exactly one key [api-guide "Faults"]."""
    inner = obj({"code": {"const": code} if code is not None else INT, "message": STR})
    if name is not None:
        return obj({name: inner})
    return {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "propertyNames": {"enum": list(FAULT_NAMES)},
        "additionalProperties": inner,
    }


# --- the dispatcher -----------------------------------------------------------------------------

Builder = Callable[[Version, bool], Schema]

_SERVER_RESOURCES: dict[str, Builder] = {
    "server": lambda v, a: envelope("server", server_entity(v, a)),
    "server_entity": server_entity,
    "server_detail_entry": server_detail_entry,
    "servers_detail": lambda v, a: envelope(
        "servers", array(server_detail_entry(v, a)), servers_links=NEXT_LINKS
    ),
    "server_list_entry": lambda v, a: SERVER_LIST_ENTRY,
    "servers": lambda v, a: envelope("servers", array(SERVER_LIST_ENTRY), servers_links=NEXT_LINKS),
    "server_create": lambda v, a: SERVER_CREATE,
    "server_create_reservation": lambda v, a: SERVER_CREATE_RESERVATION,
    "version_list": lambda v, a: VERSION_LIST,
    "version_show": lambda v, a: VERSION_SHOW,
    "fault": lambda v, a: fault(),
}

RESOURCES: dict[str, Builder] = {**_SERVER_RESOURCES, **_OTHER_RESOURCES, **_IMAGE_RESOURCES}


def schema(resource: str, version: str = MIN_VERSION, admin: bool = False) -> Schema:
    """The reference JSON Schema of a Nova response body for `resource` at `version`.

    resource: one of sorted(RESOURCES) - e.g. "server", "servers", "servers_detail",
    "server_create", "flavor", "flavors", "flavors_detail", "keypair", "keypairs",
    "keypair_create", "limits", "quota_set", "quota_set_defaults", "quota_set_detail",
    "availability_zones", "services", "hypervisors", "hypervisors_detail", "hypervisor",
    "hypervisor_statistics", "instance_actions", "instance_action", "console_output",
    "server_metadata", "server_metadata_item", "server_tags", "version_list", "version_show".
    """
    v = parse_version(version)
    if not (parse_version(MIN_VERSION) <= v <= parse_version(MAX_VERSION)):
        raise ValueError(f"{version} is outside {MIN_VERSION}..{MAX_VERSION}")
    try:
        builder = RESOURCES[resource]
    except KeyError:
        raise KeyError(f"unknown resource {resource!r}; known: {sorted(RESOURCES)}") from None
    return copy.deepcopy(builder(v, admin))


__all__ = ["MAX_VERSION", "MIN_VERSION", "RESOURCES", "fault", "schema"]

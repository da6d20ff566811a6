"""Request schemas for /servers: create, update and the list query, by microversion."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import (
    MAX_TAG_COUNT,
    Schema,
    Versioned,
    access_ipv4,
    access_ipv6,
    admin_password,
    boolean,
    derive,
    description,
    disk_config,
    flavor_ref,
    fqdn,
    image_id_or_empty,
    ip_address,
    metadata,
    multi,
    name,
    non_negative_integer,
    personality,
    positive_integer,
    query_param,
    query_regex_param,
    tag,
    trusted_certs,
    user_data,
    uuid_type,
)

_legacy_bdm: Schema = {
    "type": "object",
    "properties": {
        "virtual_name": {"type": "string", "maxLength": 255},
        "volume_id": uuid_type,
        "snapshot_id": uuid_type,
        "volume_size": {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1, "maximum": 0x7FFFFFFF},
        "device_name": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9._/-]*$"},
        "delete_on_termination": boolean,
        "no_device": {},
        "connection_info": {"type": "string", "maxLength": 16777215},
    },
    "additionalProperties": False,
}

_bdm_v2 = derive(_legacy_bdm)
_bdm_v2["properties"].update(
    {
        "source_type": {"type": "string", "enum": ["volume", "image", "snapshot", "blank"]},
        "uuid": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9._-]*$"},
        "image_id": uuid_type,
        "destination_type": {"type": "string", "enum": ["local", "volume"]},
        "guest_format": {"type": "string", "maxLength": 255},
        "device_type": {"type": "string", "maxLength": 255},
        "disk_bus": {"type": "string", "maxLength": 255},
        "boot_index": {"type": ["integer", "string", "null"], "pattern": "^-?[0-9]+$"},
    }
)

_hints: Schema = {
    "type": "object",
    "properties": {
        "group": {"oneOf": [{"type": "array", "items": uuid_type}, uuid_type]},
        "different_host": {"oneOf": [uuid_type, {"type": "array", "items": uuid_type}]},
        "same_host": {"type": ["string", "array"], "items": uuid_type},
        "query": {"type": ["string", "object"]},
        "target_cell": name,
        "different_cell": {"type": ["string", "array"], "items": {"type": "string"}},
        "build_near_host_ip": ip_address,
        "cidr": {"type": "string", "pattern": "^/[0-9a-f.:]+$"},
    },
    # Nova deliberately accepts unknown hints.
    "additionalProperties": True,
}

create: Schema = {
    "type": "object",
    "properties": {
        "server": {
            "type": "object",
            "properties": {
                "name": name,
                "imageRef": image_id_or_empty,
                "flavorRef": flavor_ref,
                "adminPass": admin_password,
                "metadata": metadata,
                "networks": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "fixed_ip": ip_address,
                            "port": {"type": ["string", "null"], "format": "uuid"},
                            "uuid": {"type": "string"},
                        },
                        "additionalProperties": False,
                    },
                },
                "OS-DCF:diskConfig": disk_config,
                "accessIPv4": access_ipv4,
                "accessIPv6": access_ipv6,
                "personality": personality,
                "availability_zone": name,
                "block_device_mapping": {"type": "array", "items": _legacy_bdm},
                "block_device_mapping_v2": {"type": "array", "items": _bdm_v2},
                "config_drive": boolean,
                "key_name": name,
                "min_count": positive_integer,
                "max_count": positive_integer,
                "return_reservation_id": boolean,
                "security_groups": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"name": name}, "additionalProperties": False},
                },
                "user_data": user_data,
            },
            "required": ["name", "flavorRef"],
            "additionalProperties": False,
        },
        "os:scheduler_hints": _hints,
        "OS-SCH-HNT:scheduler_hints": _hints,
    },
    "required": ["server"],
    "additionalProperties": False,
}


def _server(schema: Schema) -> Schema:
    props: Schema = schema["properties"]["server"]
    return props


create_v219 = derive(create)
_server(create_v219)["properties"]["description"] = description

# 2.32 only: tags on networks and BDMs (2.33-2.41 drop the BDM tag again, as Nova does).
create_v232 = derive(create_v219)
_server(create_v232)["properties"]["networks"]["items"]["properties"]["tag"] = tag
_server(create_v232)["properties"]["block_device_mapping_v2"]["items"]["properties"]["tag"] = tag

create_v233 = derive(create_v219)
_server(create_v233)["properties"]["networks"]["items"]["properties"]["tag"] = tag

# 2.37: networks is required, and is "auto", "none" or a list whose uuids are real UUIDs.
create_v237 = derive(create_v233)
_server(create_v237)["required"].append("networks")
_server(create_v237)["properties"]["networks"] = {
    "oneOf": [
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "fixed_ip": ip_address,
                    "port": {"type": ["string", "null"], "format": "uuid"},
                    "uuid": {"type": "string", "format": "uuid"},
                },
                "additionalProperties": False,
            },
        },
        {"type": "string", "enum": ["none", "auto"]},
    ]
}

create_v242 = derive(create_v237)
_server(create_v242)["properties"]["networks"]["oneOf"][0]["items"]["properties"]["tag"] = tag
_server(create_v242)["properties"]["block_device_mapping_v2"]["items"]["properties"]["tag"] = tag

create_v252 = derive(create_v242)
_server(create_v252)["properties"]["tags"] = {"type": "array", "items": tag, "maxItems": MAX_TAG_COUNT}

create_v257 = derive(create_v252)
_server(create_v257)["properties"].pop("personality")

create_v263 = derive(create_v257)
_server(create_v263)["properties"]["trusted_image_certificates"] = trusted_certs

create_v267 = derive(create_v263)
_server(create_v267)["properties"]["block_device_mapping_v2"]["items"]["properties"]["volume_type"] = {
    "type": ["string", "null"],
    "minLength": 0,
    "maxLength": 255,
}

create_v274 = derive(create_v267)
_server(create_v274)["properties"]["host"] = fqdn
_server(create_v274)["properties"]["hypervisor_hostname"] = fqdn

CREATE = Versioned(
    ("2.1", "2.18", create),
    ("2.19", "2.31", create_v219),
    ("2.32", "2.32", create_v232),
    ("2.33", "2.36", create_v233),
    ("2.37", "2.41", create_v237),
    ("2.42", "2.51", create_v242),
    ("2.52", "2.56", create_v252),
    ("2.57", "2.62", create_v257),
    ("2.63", "2.66", create_v263),
    ("2.67", "2.73", create_v267),
    ("2.74", None, create_v274),
)

update: Schema = {
    "type": "object",
    "properties": {
        "server": {
            "type": "object",
            "properties": {
                "name": name,
                "OS-DCF:diskConfig": disk_config,
                "accessIPv4": access_ipv4,
                "accessIPv6": access_ipv6,
            },
            "additionalProperties": False,
        },
    },
    "required": ["server"],
    "additionalProperties": False,
}
update_v219 = derive(update)
_server(update_v219)["properties"]["description"] = description

UPDATE = Versioned(("2.1", "2.18", update), ("2.19", None, update_v219))

# --- GET /servers and /servers/detail query parameters ---

# Sort keys Nova ignores (accepted, then dropped) and the ones it honours.
IGNORED_SORT_KEYS = [
    "architecture", "cell_name", "cleaned", "default_ephemeral_device", "default_swap_device", "deleted",
    "deleted_at", "disable_terminate", "ephemeral_gb", "ephemeral_key_uuid", "id", "key_data", "launched_on",
    "locked", "memory_mb", "os_type", "reservation_id", "root_gb", "shutdown_terminate", "user_data", "vcpus",
    "vm_mode",
]
IGNORED_SORT_KEYS_V273 = [k for k in IGNORED_SORT_KEYS if k != "locked"]
SORT_KEYS = [
    "access_ip_v4", "access_ip_v6", "auto_disk_config", "availability_zone", "config_drive", "created_at",
    "display_description", "display_name", "host", "hostname", "image_ref", "instance_type_id", "kernel_id",
    "key_name", "launch_index", "launched_at", "locked_by", "node", "power_state", "progress", "project_id",
    "ramdisk_id", "root_device_name", "task_state", "terminated_at", "updated_at", "user_id", "uuid", "vm_state",
]
SORT_KEYS_V273 = ["locked", *SORT_KEYS]

JOINED_TABLE_PARAMS = (
    "block_device_mapping", "services", "metadata", "system_metadata", "info_cache", "security_groups", "pci_devices",
)

index_query: Schema = {
    "type": "object",
    "properties": {
        "user_id": query_param,
        "project_id": query_param,
        "tenant_id": query_param,
        "launch_index": query_param,
        "image_ref": query_param,
        "image": query_param,
        "kernel_id": query_regex_param,
        "ramdisk_id": query_regex_param,
        "hostname": query_regex_param,
        "key_name": query_regex_param,
        "power_state": query_regex_param,
        "vm_state": query_param,
        "task_state": query_param,
        "host": query_param,
        "node": query_regex_param,
        "flavor": query_regex_param,
        "reservation_id": query_regex_param,
        "launched_at": query_regex_param,
        "terminated_at": query_regex_param,
        "availability_zone": query_regex_param,
        "name": query_regex_param,
        "display_name": query_regex_param,
        "description": query_regex_param,
        "display_description": query_regex_param,
        "locked_by": query_regex_param,
        "uuid": query_param,
        "root_device_name": query_regex_param,
        "config_drive": query_regex_param,
        "access_ip_v4": query_regex_param,
        "access_ip_v6": query_regex_param,
        "auto_disk_config": query_regex_param,
        "progress": query_regex_param,
        "sort_key": multi({"type": "string", "enum": SORT_KEYS + IGNORED_SORT_KEYS}),
        "sort_dir": query_param,
        "all_tenants": query_param,
        "soft_deleted": query_param,
        "deleted": query_param,
        "status": query_param,
        "changes-since": multi({"type": "string", "format": "date-time"}),
        "ip": query_regex_param,
        "ip6": query_regex_param,
        "created_at": query_regex_param,
        "limit": multi(non_negative_integer),
        "marker": multi({"type": "string"}),
        **{p: query_param for p in JOINED_TABLE_PARAMS},
    },
    # Unknown parameters are stripped (not rejected) before 2.75.
    "additionalProperties": True,
    "patternProperties": {"^_": query_param},
}

index_query_v226 = derive(index_query)
index_query_v226["properties"].update(
    {"tags": query_regex_param, "tags-any": query_regex_param, "not-tags": query_regex_param, "not-tags-any": query_regex_param}
)
index_query_v266 = derive(index_query_v226)
index_query_v266["properties"]["changes-before"] = multi({"type": "string", "format": "date-time"})
index_query_v273 = derive(index_query_v266)
index_query_v273["properties"]["sort_key"] = multi({"type": "string", "enum": SORT_KEYS_V273 + IGNORED_SORT_KEYS_V273})
index_query_v273["properties"]["locked"] = query_param
index_query_v275 = derive(index_query_v273)
index_query_v275["properties"]["sort_key"] = multi({"type": "string", "enum": SORT_KEYS_V273})
index_query_v275["additionalProperties"] = False

INDEX_QUERY = Versioned(
    ("2.1", "2.25", index_query),
    ("2.26", "2.65", index_query_v226),
    ("2.66", "2.72", index_query_v266),
    ("2.73", "2.74", index_query_v273),
    ("2.75", None, index_query_v275),
)

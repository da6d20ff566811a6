"""Request schemas of live migration (Nova's migrate_server.py os-migrateLive and
server_migrations.py force_complete)."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import Schema, Versioned, boolean, derive, fqdn

_host = derive(fqdn)
_host["type"] = ["string", "null"]


def _migrate_live(props: dict[str, Schema], required: list[str]) -> Schema:
    inner: Schema = {"type": "object", "properties": props, "required": required, "additionalProperties": False}
    return {"type": "object", "properties": {"os-migrateLive": inner}, "required": ["os-migrateLive"],
            "additionalProperties": False}


_block_auto: Schema = {"oneOf": [boolean, {"type": "string", "enum": ["auto"]}]}
migrate_live_v21 = _migrate_live({"block_migration": boolean, "disk_over_commit": boolean, "host": _host},
                                 ["block_migration", "disk_over_commit", "host"])
migrate_live_v225 = _migrate_live({"block_migration": _block_auto, "host": _host}, ["block_migration", "host"])
migrate_live_v230 = _migrate_live({"block_migration": _block_auto, "host": _host, "force": boolean},
                                  ["block_migration", "host"])
migrate_live_v268 = migrate_live_v225
force_complete_schema: Schema = {"type": "object", "properties": {"force_complete": {"type": "null"}},
                                 "required": ["force_complete"], "additionalProperties": False}

SCHEMAS: dict[str, Versioned] = {
    "os-migrateLive": Versioned(("2.1", "2.24", migrate_live_v21), ("2.25", "2.29", migrate_live_v225),
                                ("2.30", "2.67", migrate_live_v230), ("2.68", None, migrate_live_v268)),
}

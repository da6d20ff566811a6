"""Request schemas of the restore, forceDelete and createBackup server actions (Nova's
deferred_delete and create_backup schemas)."""

from __future__ import annotations

from cumulo.compute.api.schemas._base import Schema, Versioned, metadata, name, non_negative_integer


def _any_body(action: str) -> Schema:
    # Nova accepts any value for the argument ({"restore": null} as well as {"restore": {}}).
    return {"type": "object", "properties": {action: {}}, "required": [action], "additionalProperties": False}


create_backup: Schema = {
    "type": "object",
    "properties": {
        "createBackup": {
            "type": "object",
            "properties": {
                "name": name,
                "backup_type": {"type": "string"},
                "rotation": non_negative_integer,
                "metadata": metadata,
            },
            "required": ["name", "backup_type", "rotation"],
            "additionalProperties": False,
        },
    },
    "required": ["createBackup"],
    "additionalProperties": False,
}

SCHEMAS: dict[str, Versioned] = {
    "restore": Versioned(("2.1", None, _any_body("restore"))),
    "forceDelete": Versioned(("2.1", None, _any_body("forceDelete"))),
    "createBackup": Versioned(("2.1", None, create_backup)),
}

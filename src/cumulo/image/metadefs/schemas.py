"""The metadefs JSON schemas Glance serves at /v2/schemas/metadefs/* (and validates bodies with).
Shapes follow the Image API v2 reference; request validation uses the same documents with the
read-only attributes taken out."""

from __future__ import annotations

import copy
from typing import Any

_TYPES = ["array", "boolean", "integer", "number", "object", "string", None]
_LINKS = [
    {"rel": "first", "href": "{first}"},
    {"rel": "next", "href": "{next}"},
    {"rel": "describedby", "href": "{schema}"},
]
READ_ONLY = ("created_at", "updated_at", "schema", "self")
VISIBILITIES = ("public", "private")


def _stamp(what: str, kind: str) -> dict[str, Any]:
    desc = f"Date and time of {what}" if kind == "created" else f"Date and time of the last {what} modification"
    return {"type": "string", "readOnly": True, "description": desc, "format": "date-time"}


def _stamps(what: str, created: str | None = None) -> dict[str, Any]:
    return {"created_at": _stamp(created or f"{what} creation", "created"), "updated_at": _stamp(what, "updated")}


def _definitions(with_property: bool) -> dict[str, Any]:
    defs: dict[str, Any] = {
        "positiveInteger": {"type": "integer", "minimum": 0},
        "positiveIntegerDefault0": {"allOf": [{"$ref": "#/definitions/positiveInteger"}, {"default": 0}]},
        "stringArray": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    }
    if with_property:
        defs["property"] = {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["title", "type"],
                "properties": _property_attributes(),
            },
        }
    return defs


def _property_attributes() -> dict[str, Any]:
    """What a property definition may say (a JSON-schema fragment plus name/title/operators)."""
    return {
        "name": {"type": "string", "maxLength": 255},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "operators": {"type": "array", "items": {"type": "string"}},
        "type": {"type": "string", "enum": _TYPES},
        "required": {"$ref": "#/definitions/stringArray"},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "maxLength": {"$ref": "#/definitions/positiveInteger"},
        "minLength": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "pattern": {"type": "string", "format": "regex"},
        "enum": {"type": "array"},
        "readonly": {"type": "boolean"},
        "default": {},
        "items": {
            "type": "object",
            "properties": {"type": {"type": "string", "enum": _TYPES}, "enum": {"type": "array"}},
        },
        "maxItems": {"$ref": "#/definitions/positiveInteger"},
        "minItems": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "uniqueItems": {"type": "boolean", "default": False},
        "additionalItems": {"type": "boolean"},
    }


def _collection(name: str, key: str, item: dict[str, Any], *, mapping: bool = False) -> dict[str, Any]:
    item = copy.deepcopy(item)
    defs = item.pop("definitions", None)
    prop: dict[str, Any] = (
        {"type": "object", "additionalProperties": item} if mapping else {"type": "array", "items": item}
    )
    schema: dict[str, Any] = {
        "name": name,
        "properties": {key: prop, "first": {"type": "string"}, "next": {"type": "string"}, "schema": {"type": "string"}},
        "links": copy.deepcopy(_LINKS),
    }
    if defs is not None:
        schema["definitions"] = defs
    return schema


def resource_type_association_schema() -> dict[str, Any]:
    return {
        "name": "resource_type_association",
        "properties": {
            "name": {
                "type": "string",
                "maxLength": 80,
                "description": "Resource type names should be aligned with Heat resource types whenever possible: "
                "https://docs.openstack.org/heat/latest/template_guide/openstack.html",
            },
            "prefix": {
                "type": "string",
                "maxLength": 80,
                "description": "Specifies the prefix to use for the given resource type. Any properties in the "
                "namespace should be prefixed with this prefix when being applied to the specified resource type. "
                "Must include prefix separator (e.g. a colon :).",
            },
            "properties_target": {
                "type": "string",
                "maxLength": 80,
                "description": "Some resource types allow more than one key / value pair per instance.  For example, "
                "Cinder allows user and image metadata on volumes. Only the image properties metadata is evaluated "
                "by Nova (scheduling or drivers). This property allows a namespace target to remove the ambiguity.",
            },
            **_stamps("resource type association", "resource type association"),
        },
        "additionalProperties": False,
        "required": ["name"],
    }


def resource_type_associations_schema() -> dict[str, Any]:
    return _collection("resource_type_associations", "resource_type_associations", resource_type_association_schema())


def namespace_schema() -> dict[str, Any]:
    return {
        "name": "namespace",
        "properties": {
            "namespace": {"type": "string", "description": "The unique namespace text.", "maxLength": 80},
            "display_name": {
                "type": "string",
                "description": "The user friendly name for the namespace. Used by UI if available.",
                "maxLength": 80,
            },
            "description": {
                "type": "string",
                "description": "Provides a user friendly description of the namespace.",
                "maxLength": 500,
            },
            "visibility": {
                "type": "string",
                "description": "Scope of namespace accessibility.",
                "enum": list(VISIBILITIES),
            },
            "protected": {"type": "boolean", "description": "If true, namespace will not be deletable."},
            "owner": {"type": "string", "description": "Owner of the namespace.", "maxLength": 255},
            **_stamps("namespace"),
            "schema": {"type": "string", "readOnly": True},
            "self": {"type": "string", "readOnly": True},
            "resource_type_associations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "prefix": {"type": "string"},
                        "properties_target": {"type": "string"},
                    },
                },
            },
            "properties": {"$ref": "#/definitions/property"},
            "objects": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "required": {"$ref": "#/definitions/stringArray"},
                        "properties": {"$ref": "#/definitions/property"},
                    },
                },
            },
            "tags": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
        },
        "additionalProperties": False,
        "definitions": _definitions(True),
        "required": ["namespace"],
    }


def namespaces_schema() -> dict[str, Any]:
    return _collection("namespaces", "namespaces", namespace_schema())


def object_schema() -> dict[str, Any]:
    return {
        "name": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 255},
            "description": {"type": "string"},
            "required": {"$ref": "#/definitions/stringArray"},
            "properties": {"$ref": "#/definitions/property"},
            "schema": {"type": "string", "readOnly": True},
            "self": {"type": "string", "readOnly": True},
            **_stamps("object"),
        },
        "additionalProperties": False,
        "definitions": _definitions(True),
        "required": ["name"],
    }


def objects_schema() -> dict[str, Any]:
    return _collection("objects", "objects", object_schema())


def property_schema() -> dict[str, Any]:
    return {
        "name": "property",
        "properties": _property_attributes(),
        "additionalProperties": False,
        "definitions": _definitions(False),
        "required": ["type", "title", "name"],
    }


def properties_schema() -> dict[str, Any]:
    item = property_schema()
    item["required"] = ["type", "title"]
    return _collection("properties", "properties", item, mapping=True)


def tag_schema() -> dict[str, Any]:
    return {
        "name": "tag",
        "properties": {"name": {"type": "string", "maxLength": 255}, **_stamps("tag")},
        "additionalProperties": False,
        "required": ["name"],
    }


def tags_schema() -> dict[str, Any]:
    return _collection("tags", "tags", tag_schema())


def resource_types_schema() -> dict[str, Any]:
    """Not served by Glance; what GET /v2/metadefs/resource_types lists (documents the OpenAPI shape)."""
    return {
        "name": "resource_types",
        "properties": {
            "resource_types": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, **_stamps("resource type")},
                },
            }
        },
    }


# /v2/schemas/metadefs/<name> → builder
SCHEMAS = {
    "namespace": namespace_schema,
    "namespaces": namespaces_schema,
    "resource_type": resource_type_association_schema,
    "resource_types": resource_type_associations_schema,
    "object": object_schema,
    "objects": objects_schema,
    "property": property_schema,
    "properties": properties_schema,
    "tag": tag_schema,
    "tags": tags_schema,
}


def request_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A served schema as a request validator: an object, read-only attributes left to the caller
    (Glance answers 403 for them before validating)."""
    body = copy.deepcopy(schema)
    body.pop("links", None)
    body["type"] = "object"
    for key in READ_ONLY:
        body["properties"].pop(key, None)
    return body


def inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its "#/definitions/..." references replaced by their targets, for documents
    (OpenAPI) where a local definitions section does not resolve."""
    defs = schema.get("definitions", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/definitions/"):
                return walk(defs[ref.rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items() if k != "definitions"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(schema)
    return out

"""Building blocks shared by the reference schemas, and the checker that reports every difference."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema

Schema = dict[str, Any]
Version = tuple[int, int]

# --- versions -------------------------------------------------------------------------------


def parse_version(text: str | Version) -> Version:
    """'2.47' -> (2, 47). Tuples pass through."""
    if isinstance(text, tuple):
        return text
    m = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", text)
    if not m:
        raise ValueError(f"not a microversion: {text!r}")
    return int(m.group(1)), int(m.group(2))


# --- scalar shapes --------------------------------------------------------------------------

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
NULL: Schema = {"type": "null"}
NUMBER: Schema = {"type": "number"}
ANY_OBJECT: Schema = {"type": "object"}

UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
UUID: Schema = {"type": "string", "pattern": UUID_RE}
# ISO 8601 as OpenStack services print it: seconds, optional fraction, optional Z or offset.
TS_RE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})?$"
TS: Schema = {"type": "string", "pattern": TS_RE}
URL: Schema = {"type": "string", "pattern": r"^https?://"}


def nullable(s: Schema) -> Schema:
    """The same schema, also accepting null (handles 'type', 'enum' and 'const')."""
    out = copy.deepcopy(s)
    t = out.get("type")
    if isinstance(t, str):
        out["type"] = [t, "null"]
    elif isinstance(t, list) and "null" not in t:
        out["type"] = [*t, "null"]
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    if "const" in out:
        out = {"anyOf": [out, NULL]}
    return out


def enum(*values: Any) -> Schema:
    return {"enum": list(values)}


def array(items: Schema, **kw: Any) -> Schema:
    return {"type": "array", "items": items, **kw}


def str_map(value: Schema = STR) -> Schema:
    """An object whose keys are free and whose values all have one shape (metadata, extra_specs)."""
    return {"type": "object", "additionalProperties": value}


def obj(props: dict[str, Schema], *, optional: Iterable[str] = ()) -> Schema:
    """A closed object: every property required unless named in `optional`; nothing else allowed."""
    opt = set(optional)
    unknown = opt - set(props)
    if unknown:
        raise ValueError(f"optional names not in props: {sorted(unknown)}")
    return {
        "type": "object",
        "properties": dict(props),
        "required": [k for k in props if k not in opt],
        "additionalProperties": False,
    }


def link(rel: Schema | None = None, *, with_type: bool = False) -> Schema:
    props: dict[str, Schema] = {"href": URL, "rel": rel or STR}
    if with_type:
        props["type"] = STR
        return obj(props, optional=["type"])
    return obj(props)


def has_rels(*rels: str) -> list[Schema]:
    """allOf clauses: the links array contains one link of each rel."""
    return [{"contains": {"type": "object", "properties": {"rel": {"const": r}}, "required": ["rel"]}} for r in rels]


def links(*rels: str) -> Schema:
    """Nova-style resource links: exactly the given rels (self, bookmark...)."""
    s = array(link(enum(*rels)), minItems=len(rels), maxItems=len(rels))
    s["allOf"] = has_rels(*rels)
    return s


# Nova/Glance-style collection "next" links: one link object, rel next.
NEXT_LINKS: Schema = array(link({"const": "next"}), minItems=1, maxItems=1)


# --- declarative field tables -----------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One response field, the versions that have it, and who sees it.

    min/max are inclusive microversions; admin_only fields appear only for admins (Nova's default
    policy); required=False for fields the reference marks conditional (e.g. fault, progress).
    """

    name: str
    schema: Schema
    min: str = "2.1"
    max: str | None = None
    admin_only: bool = False
    required: bool = True

    def applies(self, version: Version, admin: bool) -> bool:
        if version < parse_version(self.min):
            return False
        if self.max is not None and version > parse_version(self.max):
            return False
        return admin or not self.admin_only


def build(fields: Sequence[Field], version: Version, admin: bool = False) -> Schema:
    """The closed object schema for the fields that exist at `version` for this caller."""
    chosen = [f for f in fields if f.applies(version, admin)]
    names = [f.name for f in chosen]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"field table overlaps at {version}: {sorted(dupes)}")
    return {
        "type": "object",
        "properties": {f.name: f.schema for f in chosen},
        "required": [f.name for f in chosen if f.required],
        "additionalProperties": False,
    }


def envelope(key: str, inner: Schema, **optional: Schema) -> Schema:
    """{"key": inner} plus optional sibling keys (e.g. servers_links)."""
    props = {key: inner, **optional}
    return obj(props, optional=list(optional))


# --- checking ---------------------------------------------------------------------------------


class ShapeError(AssertionError):
    """A response body that does not match its reference schema; the message lists each difference."""


def _describe(err: jsonschema.ValidationError) -> str:
    path = "/" + "/".join(str(p) for p in err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        return f"{path}: extra field(s) {extra} (not in the reference for this version)"
    if err.validator == "required":
        where = ""
        if isinstance(err.instance, dict) and "status" in err.instance:
            where = f" for status {err.instance['status']!r}"
        return f"{path}: {err.message} (missing{where})"
    if err.validator == "not" and isinstance(err.validator_value, dict) and "required" in err.validator_value:
        where = ""
        if isinstance(err.instance, dict) and "status" in err.instance:
            where = f" for status {err.instance['status']!r}"
        return f"{path}: field(s) {err.validator_value['required']} must not be present{where}"
    got = json.dumps(err.instance, default=str)
    if len(got) > 120:
        got = got[:117] + "..."
    return f"{path}: {err.message.splitlines()[0][:200]} (got {got})"


def _leaves(err: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """For anyOf/oneOf, report the alternative that got furthest instead of a generic message."""
    if err.context:
        best = max(err.context, key=lambda e: len(list(e.absolute_path)))
        deepest = [e for e in err.context if len(list(e.absolute_path)) == len(list(best.absolute_path))]
        out: list[jsonschema.ValidationError] = []
        for e in deepest:
            out.extend(_leaves(e))
        return out
    return [err]


def shape_errors(body: Any, schema: Schema) -> list[str]:
    """Every difference between `body` and `schema`, one readable line each (empty when it matches)."""
    validator = jsonschema.Draft202012Validator(schema)
    lines: list[str] = []
    for err in sorted(validator.iter_errors(body), key=lambda e: list(map(str, e.absolute_path))):
        for leaf in _leaves(err):
            line = _describe(leaf)
            if line not in lines:
                lines.append(line)
    return lines


def check(body: Any, schema: Schema, what: str = "response") -> None:
    """Raise ShapeError naming every difference between `body` and the reference `schema`."""
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = shape_errors(body, schema)
    if errors:
        raise ShapeError(f"{what} does not match the reference:\n  " + "\n  ".join(errors))

"""Checking request attributes against the categories (GFD.221 §4.3.2 attribute properties), before any
backend sees them: every attribute known to the kind (parents included) or one of the request's
mixins, of the right type (text renderings' strings/numbers/booleans coerced to the attribute's type),
present when required on create, never an immutable one set by the client. Each problem is an
`errors.Invalid` whose message names the attribute.

Choices where the specification is silent: occi.core.id may be sent (the API decides whether it
matches); the 1.1-only occi.compute.speed is accepted and dropped; attributes the provider assigns
(categories.PROVIDER_ASSIGNED: MAC, device id, interface, an interface's address) are not demanded;
an inline link's kind is inferred from its target (storage -> storagelink, network ->
networkinterface) when the client names none.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cumulo import errors
from cumulo.occi import categories
from cumulo.occi.model import Action, ActionRequest, Attribute, EntityRequest, Kind, LinkRequest, Mixin

MAX_STRING = 256 * 1024
_NUMBER_RE = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*\Z", re.ASCII)


def _bad(name: str, what: str) -> errors.Invalid:
    return errors.Invalid(f"attribute {name}: {what}")


def _number(name: str, value: Any) -> float | int:
    if isinstance(value, bool):
        raise _bad(name, "expected a number, got a boolean")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise _bad(name, "expected a finite number")
        if isinstance(value, int) and abs(value) > 1 << 63:
            raise _bad(name, "number out of range")
        return value
    if isinstance(value, str) and len(value) <= 64 and _NUMBER_RE.match(value):
        f = float(value)
        if not math.isfinite(f):
            raise _bad(name, "expected a finite number")
        return int(value) if re.fullmatch(r"\s*[+-]?\d+\s*", value, re.ASCII) else f
    raise _bad(name, f"expected a number, got {_show(value)}")


def _show(value: Any) -> str:
    s = repr(value)
    return s if len(s) <= 40 else s[:40] + "..."


def _check_format(name: str, value: str) -> None:
    fmt = categories.FORMATS.get(name)
    try:
        if fmt == "cidr":
            ipaddress.ip_network(value, strict=False)
            if "/" not in value:
                raise ValueError(value)
        elif fmt == "ip":
            ipaddress.ip_address(value)
        elif fmt == "ip_or_cidr":
            ipaddress.ip_interface(value)
    except ValueError as e:
        raise _bad(name, f"{_show(value)} is not a valid {'CIDR' if fmt == 'cidr' else 'IP address'}") from e


def coerce(attr: Attribute, value: Any) -> Any:
    """`value` as `attr`'s type (text renderings deliver strings, numbers and booleans), or Invalid."""
    name = attr.name
    if value is None:
        raise _bad(name, "null is not a value")
    if attr.type == "string":
        if not isinstance(value, str):
            raise _bad(name, f"expected a string, got {_show(value)}")
        if len(value) > MAX_STRING:
            raise _bad(name, "value too long")
        if attr.pattern and not re.fullmatch(attr.pattern, value):
            raise _bad(name, f"{_show(value)} does not match {attr.pattern}")
        if name in categories.FORMATS:
            _check_format(name, value)
        return value
    if attr.type == "enum":
        if not isinstance(value, str) or value not in attr.enum:
            raise _bad(name, f"{_show(value)} is not one of {', '.join(attr.enum)}")
        return value
    if attr.type == "number":
        return float(_number(name, value))
    if attr.type == "integer":
        n = _number(name, value)
        if isinstance(n, float):
            if not n.is_integer():
                raise _bad(name, f"expected an integer, got {_show(value)}")
            n = int(n)
        lo_hi = categories.RANGES.get(name)
        if lo_hi and not lo_hi[0] <= n <= lo_hi[1]:
            raise _bad(name, f"{n} is out of range {lo_hi[0]}-{lo_hi[1]}")
        return n
    if attr.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _bad(name, f"expected a boolean, got {_show(value)}")
    # array / object: JSON values, or (text renderings) a JSON text in a string.
    want: type = list if attr.type == "array" else dict
    if isinstance(value, str) and len(value) <= MAX_STRING:
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as e:
            raise _bad(name, f"expected a JSON {attr.type}") from e
    if not isinstance(value, want):
        raise _bad(name, f"expected an {attr.type}" if attr.type == "array" else "expected an object")
    return value


def _applies(mixin: Mixin, kind: Kind) -> bool:
    if not mixin.applies:
        return True
    ids = {k.id for k in categories.ancestry(kind.id)} | {kind.id}
    return any(a in ids for a in mixin.applies)


def _definitions(kind: Kind, mixins: Sequence[Mixin]) -> dict[str, Attribute]:
    defs = categories.attributes_of(kind.id) or {a.name: a for a in kind.attributes}
    for m in mixins:
        for a in m.attributes:
            # A template's definition (e.g. resource_tpl cores with a default) refines the kind's type
            # only where it says more; the kind's type wins on conflicts so templates cannot loosen it.
            defs.setdefault(a.name, a)
    return defs


def _check_attributes(attrs: Mapping[str, Any], defs: Mapping[str, Attribute], kind: Kind, *,
                      create: bool, skip_required: frozenset[str] = frozenset(),
                      current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    legacy = categories.LEGACY_ATTRIBUTES.get(kind.id, frozenset())
    out: dict[str, Any] = {}
    for name, value in attrs.items():
        if name in legacy:
            continue
        attr = defs.get(name)
        if attr is None:
            raise errors.Invalid(f"unknown attribute {name[:120]} for kind {kind.term}")
        if not attr.mutable and name != "occi.core.id":
            # A PUT of the entity's own rendering repeats its immutable attributes: equal to the
            # current value they are no change and are dropped; any other value is refused.
            if current is not None and name in current and coerce(attr, value) == current[name]:
                continue
            raise errors.Invalid(f"attribute {name} is immutable")
        if name == "occi.core.id" and current is not None and str(value) != str(current.get(name, value)):
            # an update names its entity by its location: another entity's id is another entity's rendering
            raise errors.Invalid(f"occi.core.id {str(value)[:64]!r} is not the id of the entity at this location")
        out[name] = coerce(attr, value)
    if create:
        for name, attr in defs.items():
            if (attr.required and attr.mutable and attr.default is None and name not in out
                    and name not in categories.PROVIDER_ASSIGNED and name not in skip_required):
                raise errors.Invalid(f"missing required attribute {name}")
    return out


def _static_mixin(mixin_id: str) -> Mixin | None:
    return categories.MIXINS.get(mixin_id)


def _link_kind(link: LinkRequest) -> Kind:
    if link.kind:
        kind = categories.KINDS.get(link.kind)
        if kind is None or not categories.is_link_kind(kind.id) or kind.id == categories.LINK.id:
            raise errors.Invalid(f"link to {link.target[:120]}: {link.kind[:120]} is not a link kind")
        return kind
    target_kind = link.attributes.get("occi.core.target.kind")
    if not isinstance(target_kind, str):
        parts = [p for p in link.target.split("?", 1)[0].split("/") if p]
        k = categories.kind_by_term(parts[-2]) if len(parts) >= 2 else None
        target_kind = k.id if k else None
    if target_kind == categories.STORAGE.id:
        return categories.STORAGELINK
    if target_kind == categories.NETWORK.id:
        return categories.NETWORKINTERFACE
    raise errors.Invalid(f"link to {link.target[:120]}: cannot tell its kind (give a category or a storage/network target)")


def check_link(link: LinkRequest, *, resolve: Callable[[str], Mixin | None] = _static_mixin) -> LinkRequest:
    """An inline link of a create request: kind (given or inferred), mixins, attributes; returns a
    coerced copy whose `kind` is set."""
    kind = _link_kind(link)
    mixins: list[Mixin] = []
    for mid in link.mixins:
        m = resolve(mid)
        if m is None:
            raise errors.Invalid(f"unknown mixin {mid[:120]} on the link to {link.target[:120]}")
        if not _applies(m, kind):
            raise errors.Invalid(f"mixin {mid[:120]} does not apply to kind {kind.term}")
        mixins.append(m)
    attrs = dict(link.attributes)
    attrs.pop("occi.core.target", None)
    attrs.pop("occi.core.source", None)
    checked = _check_attributes(attrs, _definitions(kind, mixins), kind, create=True,
                                skip_required=frozenset({"occi.core.source", "occi.core.target"}))
    return LinkRequest(target=link.target, kind=kind.id, source=link.source, mixins=list(link.mixins),
                       attributes=checked, id=link.id)


def check_entity(req: EntityRequest, kind: Kind, mixins: Sequence[Mixin], *, create: bool,
                 resolve: Callable[[str], Mixin | None] = _static_mixin,
                 current: Mapping[str, Any] | None = None) -> EntityRequest:
    """`req` checked against `kind` and `mixins` (the Mixin objects of `req.mixins`, resolved by
    the API from the static, template and user mixins; for an update pass the entity's mixins too,
    so that their attributes are known). `create` demands required attributes; updates (POST
    partial, PUT full) never demand them. `current` (an update's entity attributes) lets immutable
    attributes equal to their current value through (dropped). Inline links are checked with
    `resolve` for their mixins. Returns a copy with coerced attributes and link kinds filled in."""
    if req.kind is not None and req.kind != kind.id:
        raise errors.Invalid(f"kind {req.kind[:120]} does not match the collection's kind {kind.id}")
    by_id = {m.id: m for m in mixins}
    for mid in req.mixins:
        m = by_id.get(mid)
        if m is None:
            raise errors.Invalid(f"unknown mixin {mid[:120]}")
        if not _applies(m, kind):
            raise errors.Invalid(f"mixin {mid[:120]} does not apply to kind {kind.term}")
    attrs = _check_attributes(req.attributes, _definitions(kind, mixins), kind, create=create, current=current)
    if req.links and categories.is_link_kind(kind.id):
        raise errors.Invalid("a link cannot have links")
    links = [check_link(link, resolve=resolve) for link in req.links]
    return EntityRequest(kind=kind.id, mixins=list(req.mixins), attributes=attrs, links=links)


def check_action(req: ActionRequest, action: Action) -> ActionRequest:
    """An action invocation against its action: known attributes, coerced, required ones present,
    defaults filled in (e.g. stop's method "graceful"). `req.action` "" (none sent) is allowed."""
    if req.action and req.action != action.id:
        raise errors.Invalid(f"action {req.action[:120]} does not match ?action={action.term}")
    defs = {a.name: a for a in action.attributes}
    given = dict(req.attributes)
    if action.id == categories.RESIZE.id and "occi.storage.size" in given and "size" not in given:
        given["size"] = given.pop("occi.storage.size")  # 1.1 clients name resize's size so too
    out: dict[str, Any] = {}
    for name, value in given.items():
        attr = defs.get(name)
        if attr is None:
            raise errors.Invalid(f"unknown attribute {name[:120]} for action {action.term}")
        out[name] = coerce(attr, value)
    for name, attr in defs.items():
        if name not in out:
            if attr.default is not None:
                out[name] = attr.default
            elif attr.required:
                raise errors.Invalid(f"missing required attribute {name} for action {action.term}")
    return ActionRequest(action=action.id, attributes=out)

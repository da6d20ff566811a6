"""The two ends of a link entity posted on its own (storagelink, networkinterface): where a request
names them, and the entity id each location holds."""

from __future__ import annotations

from cumulo import errors
from cumulo.occi.model import EntityRequest, LinkRequest, split_location


def endpoints(req: EntityRequest, source_role: str, target_role: str) -> tuple[str, str]:
    """(source, target) of a link posted on its own: the occi.core.source/target attributes (the
    renderings' link fields), or one LinkRequest carrying them. `source_role` / `target_role` say
    what each end is for, in the 400 naming a missing one (e.g. "the /compute/<id> to link the
    storage to")."""
    source = req.attributes.get("occi.core.source")
    target = req.attributes.get("occi.core.target")
    if (source is None or target is None) and len(req.links) == 1:
        link: LinkRequest = req.links[0]
        source = source if source is not None else link.source
        target = target if target is not None else link.target
    if not source:
        raise errors.Invalid(f"occi.core.source is required: {source_role}")
    if not target:
        raise errors.Invalid(f"occi.core.target is required: {target_role}")
    return str(source), str(target)


def located(value: str, collection: str, attr: str) -> str:
    """The entity id of `value`, a location in `collection` ("/compute/<id>", absolute or
    root-relative); a 400 naming `attr` otherwise."""
    try:
        coll, ident = split_location(value)
    except ValueError:
        raise errors.Invalid(f"{attr} {value[:128]!r} is not a /{collection}/<id> location") from None
    if coll != collection:
        raise errors.Invalid(f"{attr} {value[:128]!r} is not a /{collection}/<id> location")
    return ident

"""Policy: each rule names the least role it needs. Roles imply (admin ⇒ member ⇒ reader).

Families register their rules at import time; an unknown rule is admin-only, so a forgotten
registration fails closed.
"""

from __future__ import annotations

from cumulo.context import RequestContext
from cumulo.errors import Forbidden

ADMIN = "admin"
MEMBER = "member"
READER = "reader"

RULES: dict[str, str] = {}


def register(rules: dict[str, str]) -> None:
    for name, role in rules.items():
        if role not in (ADMIN, MEMBER, READER):
            raise ValueError(f"policy rule {name!r} names unknown role {role!r}")
        RULES[name] = role


def authorize(ctx: RequestContext, rule: str) -> None:
    """Raise Forbidden unless the caller holds the rule's role (in its scoped project)."""
    needed = RULES.get(rule, ADMIN)
    if needed not in ctx.roles:
        raise Forbidden(f"Policy doesn't allow {rule} to be performed.")


def allowed(ctx: RequestContext, rule: str) -> bool:
    return RULES.get(rule, ADMIN) in ctx.roles

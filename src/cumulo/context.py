"""The caller of a request: who, in which project, with which roles."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

# Role implication: admin ⇒ member ⇒ reader.
IMPLIED_ROLES = {"admin": ("admin", "member", "reader"), "member": ("member", "reader"), "reader": ("reader",)}


def expand_roles(names: list[str] | tuple[str, ...] | set[str]) -> frozenset[str]:
    out: set[str] = set()
    for n in names:
        out.update(IMPLIED_ROLES.get(n, (n,)))
    return frozenset(out)


@dataclass(frozen=True)
class RequestContext:
    user_id: str | None
    project_id: str | None
    roles: frozenset[str] = frozenset()
    user_name: str | None = None
    project_name: str | None = None
    domain_id: str = "default"
    request_id: str = field(default_factory=lambda: "req-" + str(uuid.uuid4()))
    token_expires_at: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def has_role(self, role: str) -> bool:
        return role in self.roles

    @classmethod
    def system(cls) -> RequestContext:
        """An internal admin context for workers and bootstrap."""
        return cls(user_id=None, project_id=None, roles=frozenset({"admin", "member", "reader"}))

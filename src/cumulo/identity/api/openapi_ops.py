"""The identity family's OpenAPI operations (the fuzz and bad-input suites build from them).

One `Op` per route; the credentials' come from their own module. The identity app serves no
/openapi.json of its own.
"""

from __future__ import annotations

from cumulo.identity import schemas as identity_s
from cumulo.identity.api import credentials as identity_credentials_api
from cumulo.web.openapi import Family, Op, Schema, op

KEYSTONE_FAULT: Schema = {
    "description": 'Keystone error: {"error": {"code": <status>, "title": "...", "message": "..."}}',
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"code": {"type": "integer"}, "title": {"type": "string"}, "message": {"type": "string"}},
            "required": ["code", "title", "message"],
        }
    },
    "required": ["error"],
}


P = "/v3/projects/{project_id}"
U = "/v3/users/{user_id}"
R = "/v3/roles/{role_id}"
IDENTITY_OPS: tuple[Op, ...] = (
    op("POST", "/v3/auth/tokens", "Issue token", body=identity_s.TOKEN_ISSUE, status=201, query=("nocatalog",)),
    op("GET", "/v3/auth/tokens", "Validate token", query=("nocatalog",)),
    op("DELETE", "/v3/auth/tokens", "Revoke token", status=204),
    op("GET", "/v3/auth/projects", "Projects available to the token"),
    op("GET", "/v3/auth/catalog", "Catalog of the token"),
    op("GET", "/v3/auth/domains", "Domains available to the token"),
    op("GET", "/v3/domains", "List domains", query=("name", "enabled")),
    op("GET", "/v3/domains/{domain_id}", "Show domain"),
    op("GET", "/v3/projects", "List projects", query=("name", "domain_id", "enabled", "parent_id", "is_domain", "tags")),
    op("POST", "/v3/projects", "Create project", body=identity_s.PROJECT_CREATE, status=201, admin=True),
    op("GET", P, "Show project"),
    op("PATCH", P, "Update project", body=identity_s.PROJECT_UPDATE, admin=True),
    op("DELETE", P, "Delete project", status=204, admin=True),
    op("GET", f"{P}/users/{{user_id}}/roles", "List a user's roles on a project"),
    op("PUT", f"{P}/users/{{user_id}}/roles/{{role_id}}", "Grant role", status=204, admin=True),
    op("GET", f"{P}/users/{{user_id}}/roles/{{role_id}}", "Check role grant", status=204),
    op("DELETE", f"{P}/users/{{user_id}}/roles/{{role_id}}", "Revoke role", status=204, admin=True),
    op("GET", "/v3/users", "List users", query=("name", "domain_id", "enabled")),
    op("POST", "/v3/users", "Create user", body=identity_s.USER_CREATE, status=201, admin=True),
    op("GET", U, "Show user"),
    op("PATCH", U, "Update user", body=identity_s.USER_UPDATE, admin=True),
    op("DELETE", U, "Delete user", status=204, admin=True),
    op("GET", f"{U}/projects", "List a user's projects"),
    op("POST", f"{U}/password", "Change own password", body=identity_s.PASSWORD_CHANGE, status=204),
    op("GET", "/v3/roles", "List roles", query=("name", "domain_id")),
    op("POST", "/v3/roles", "Create role", body=identity_s.ROLE_CREATE, status=201, admin=True),
    op("GET", R, "Show role"),
    op("PATCH", R, "Update role", body=identity_s.ROLE_UPDATE, admin=True),
    op("DELETE", R, "Delete role", status=204, admin=True),
    op("GET", "/v3/role_assignments", "List role assignments",
       query=("user.id", "scope.project.id", "role.id", "effective", "include_names", "group.id", "scope.domain.id")),
    op("GET", "/v3/services", "List services", query=("type",)),
    op("GET", "/v3/services/{service_id}", "Show service"),
    op("GET", "/v3/endpoints", "List endpoints", query=("interface", "service_id", "region_id")),
    op("GET", "/v3/endpoints/{endpoint_id}", "Show endpoint"),
    op("GET", "/v3/regions", "List regions"),
    op("GET", "/v3/regions/{region_id}", "Show region"),
    # Application and EC2 credentials (their module lists its operations).
    *(op(m, p, summary, **kw) for m, p, summary, kw in identity_credentials_api.OPENAPI_OPS),
)

FAMILY = Family("identity", "/identity", "Cumulo Identity API (Keystone v3)", KEYSTONE_FAULT, IDENTITY_OPS)

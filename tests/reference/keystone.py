"""Keystone (identity v3) response shapes, from openstack/keystone api-ref/source/v3/*.inc
(parameters.yaml) and its samples/admin/*.json, as Keystone really answers them.

    schema(resource) -> JSON Schema (draft 2020-12) of the whole body

Resources: token_unscoped, token_project (POST /v3/auth/tokens and GET with X-Subject-Token),
auth_projects, auth_catalog, project, projects, user, users, role, roles, versions (GET /identity/,
status 300), version (GET /identity/v3).
"""

from __future__ import annotations

import copy

from ._common import (
    BOOL,
    STR,
    TS,
    URL,
    Schema,
    array,
    enum,
    envelope,
    has_rels,
    link,
    nullable,
    obj,
)

# Keystone's links are objects, not arrays [parameters.yaml link_response_body / link_collection].
RESOURCE_LINKS = obj({"self": URL})
COLLECTION_LINKS = obj({"self": URL, "previous": nullable(URL), "next": nullable(URL)})

_DOMAIN_REF = obj({"id": STR, "name": STR})

# [authenticate-v3.inc "Password authentication with scoped authorization"] token.user.
_TOKEN_USER = obj(
    {
        "id": STR,
        "name": STR,
        "domain": _DOMAIN_REF,
        "password_expires_at": nullable(TS),  # null: the password never expires
    }
)
_TOKEN_PROJECT = obj({"id": STR, "name": STR, "domain": _DOMAIN_REF})
_TOKEN_ROLE = obj({"id": STR, "name": STR})

# [authenticate-v3.inc "Get service catalog"] / token.catalog: endpoints with id, interface,
# region_id, region (deprecated in 3.2, still sent) and url.
_ENDPOINT = obj(
    {
        "id": STR,
        "interface": enum("public", "internal", "admin"),
        "region_id": STR,
        "region": STR,
        "url": URL,
    }
)
CATALOG_ENTRY = obj({"endpoints": array(_ENDPOINT, minItems=1), "id": STR, "type": STR, "name": STR})
# "Get service catalog" (GET /v3/auth/catalog) lists id, interface, region, url per endpoint.
_AUTH_CATALOG_ENTRY = obj(
    {"endpoints": array(obj(_ENDPOINT["properties"], optional=["region_id"]), minItems=1), "id": STR, "type": STR, "name": STR}
)

_TOKEN_COMMON: dict[str, Schema] = {
    "methods": array(enum("password", "token"), minItems=1),
    "user": _TOKEN_USER,
    # audit_ids: one, or two for a rescoped token.
    "audit_ids": array(STR, minItems=1, maxItems=2),
    "expires_at": TS,
    "issued_at": TS,
}

# "Password authentication with unscoped authorization": no project, roles or catalog.
TOKEN_UNSCOPED = envelope("token", obj(dict(_TOKEN_COMMON)))
# "... with scoped authorization": + project, roles, catalog, is_domain (false for a project).
TOKEN_PROJECT = envelope(
    "token",
    obj(
        {
            **_TOKEN_COMMON,
            "project": _TOKEN_PROJECT,
            "is_domain": {"const": False},
            "roles": array(_TOKEN_ROLE, minItems=1),
            "catalog": array(CATALOG_ENTRY),
        }
    ),
)

# [projects.inc "Show project details"] lists options; ["List projects"] lists tags instead.
# Keystone sends both in both; each is required where its section lists it.
_PROJECT_PROPS: dict[str, Schema] = {
    "id": STR,
    "name": STR,
    "domain_id": STR,
    "description": nullable(STR),
    "enabled": BOOL,
    "is_domain": BOOL,
    "parent_id": nullable(STR),  # the domain id for a top-level project
    "links": RESOURCE_LINKS,
    "tags": array(STR),
    "options": {"type": "object"},
}
PROJECT = obj(_PROJECT_PROPS, optional=["tags"])
PROJECT_IN_LIST = obj(_PROJECT_PROPS, optional=["options"])

# [authenticate-v3.inc "Get available project scopes"]: domain_id, enabled, id, links, name;
# Keystone may add the other project attributes.
AUTH_PROJECT = obj(
    _PROJECT_PROPS,
    optional=["description", "is_domain", "parent_id", "tags", "options"],
)

# [users.inc "Show user details"]: default_project_id and federated only when set.
USER = obj(
    {
        "id": STR,
        "name": STR,
        "domain_id": STR,
        "enabled": BOOL,
        "password_expires_at": nullable(TS),
        "links": RESOURCE_LINKS,
        "default_project_id": STR,
        "description": nullable(STR),
        "email": STR,
        "federated": array({"type": "object"}),
        "options": {"type": "object"},
    },
    optional=["default_project_id", "description", "email", "federated", "options"],
)

# [roles.inc "Show role details"]: domain_id null for a global role; description required
# (may be null); options. ["List roles"] does not list options.
_ROLE_PROPS: dict[str, Schema] = {
    "id": STR,
    "name": STR,
    "domain_id": nullable(STR),
    "description": nullable(STR),
    "links": RESOURCE_LINKS,
    "options": {"type": "object"},
}
ROLE = obj(_ROLE_PROPS)
ROLE_IN_LIST = obj(_ROLE_PROPS, optional=["options"])

# Version discovery (samples identity-versions-response.json / identity-version-response.json).
_VERSION = obj(
    {
        "id": {"type": "string", "pattern": r"^v\d+\.\d+$"},
        "status": enum("stable", "supported", "deprecated", "experimental"),
        "updated": TS,
        "links": {**array(link(with_type=True), minItems=1), "allOf": has_rels("self")},
        "media-types": array(obj({"base": STR, "type": STR}), minItems=1),
    }
)

RESOURCES: dict[str, Schema] = {
    "token_unscoped": TOKEN_UNSCOPED,
    "token_project": TOKEN_PROJECT,
    "auth_projects": obj({"projects": array(AUTH_PROJECT), "links": COLLECTION_LINKS}),
    "auth_catalog": obj({"catalog": array(_AUTH_CATALOG_ENTRY), "links": COLLECTION_LINKS}),
    "project": envelope("project", PROJECT),
    "projects": obj({"projects": array(PROJECT_IN_LIST), "links": COLLECTION_LINKS}),
    "user": envelope("user", USER),
    "users": obj({"users": array(USER), "links": COLLECTION_LINKS}),
    "role": envelope("role", ROLE),
    "roles": obj({"roles": array(ROLE_IN_LIST), "links": COLLECTION_LINKS}),
    "versions": envelope("versions", obj({"values": array(_VERSION, minItems=1)})),
    "version": envelope("version", _VERSION),
    # Keystone's fault: {"error": {"code", "message", "title"}}.
    "error": envelope("error", obj({"code": {"type": "integer"}, "message": STR, "title": STR})),
}


def schema(resource: str) -> Schema:
    try:
        return copy.deepcopy(RESOURCES[resource])
    except KeyError:
        raise KeyError(f"unknown resource {resource!r}; known: {sorted(RESOURCES)}") from None

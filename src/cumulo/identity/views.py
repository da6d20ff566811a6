"""Keystone v3 response shapes: version documents, tokens, the catalog and directory entities."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request

from cumulo.catalog import CatalogEntry
from cumulo.db import isotime
from cumulo.identity.models import DEFAULT_DOMAIN_ID, DEFAULT_DOMAIN_NAME
from cumulo.identity.tokens import TokenInfo
from cumulo.web.http import base_url

# Keystone's current v3 minor version and its date, as Keystone itself reports them.
VERSION_ID = "v3.14"
VERSION_UPDATED = "2020-04-07T00:00:00Z"
MEDIA_TYPES = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]
INTERFACES = ("public", "internal", "admin")
IDENTITY_PATH = "/identity"
_NS = uuid.UUID("6f1d3c1e-6c1b-4b7e-9f57-6c756d756c6f")  # fixed, so catalog ids are stable
DOMAIN_REF = {"id": DEFAULT_DOMAIN_ID, "name": DEFAULT_DOMAIN_NAME}


def version_entry(request: Request) -> dict[str, Any]:
    return {
        "id": VERSION_ID,
        "status": "stable",
        "updated": VERSION_UPDATED,
        "links": [{"rel": "self", "href": base_url(request) + "/v3/"}],
        "media-types": MEDIA_TYPES,
    }


def link(request: Request, path: str) -> dict[str, str]:
    return {"self": base_url(request) + path}


def collection(request: Request, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: items, "links": {"self": str(request.url), "previous": None, "next": None}}


# -- catalog -----------------------------------------------------------------------------------


def public_root(request: Request) -> str:
    """scheme://host:port (plus any outer prefix) as the client reached us: the catalog's base."""
    root_path = request.scope.get("root_path", "")
    outer = root_path[: -len(IDENTITY_PATH)] if root_path.endswith(IDENTITY_PATH) else root_path
    return f"{request.url.scheme}://{request.url.netloc}{outer}"


def service_id(entry: CatalogEntry) -> str:
    return uuid.uuid5(_NS, "service:" + entry.type).hex


def endpoint_id(entry: CatalogEntry, interface: str) -> str:
    return uuid.uuid5(_NS, f"endpoint:{entry.type}:{interface}").hex


def endpoints(request: Request, entries: Sequence[CatalogEntry], region: str) -> list[dict[str, Any]]:
    """Every endpoint, in the shape of GET /v3/endpoints."""
    root = public_root(request)
    return [
        {
            "id": endpoint_id(e, iface),
            "interface": iface,
            "region": region,
            "region_id": region,
            "service_id": service_id(e),
            "url": root + e.path,
            "enabled": True,
            "links": link(request, f"/v3/endpoints/{endpoint_id(e, iface)}"),
        }
        for e in entries
        for iface in INTERFACES
    ]


def services(request: Request, entries: Sequence[CatalogEntry]) -> list[dict[str, Any]]:
    return [
        {
            "id": service_id(e),
            "type": e.type,
            "name": e.name,
            "description": f"Cumulo {e.type} service",
            "enabled": True,
            "links": link(request, f"/v3/services/{service_id(e)}"),
        }
        for e in entries
    ]


def catalog(request: Request, entries: Sequence[CatalogEntry], region: str,
            project_id: str | None = None) -> list[dict[str, Any]]:
    """The token's catalog: as Keystone, `$(project_id)s` in an endpoint URL becomes the token's
    project (Cinder's `/volume/v3/$(project_id)s`); an entry whose URL needs it is left out of an
    unscoped catalog."""
    root = public_root(request)
    entries = [e for e in entries if project_id is not None or "$(project_id)s" not in e.path]
    return [
        {
            "endpoints": [
                {
                    "id": endpoint_id(e, iface),
                    "interface": iface,
                    "region": region,
                    "region_id": region,
                    "url": root + e.path.replace("$(project_id)s", project_id or ""),
                }
                for iface in INTERFACES
            ],
            "id": service_id(e),
            "type": e.type,
            "name": e.name,
        }
        for e in entries
    ]


# -- tokens ------------------------------------------------------------------------------------


def token(info: TokenInfo, catalog_entries: list[dict[str, Any]] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "methods": list(info.methods),
        "user": {
            "domain": dict(DOMAIN_REF),
            "id": info.user_id,
            "name": info.user_name,
            "password_expires_at": None,
        },
        "audit_ids": info.audit_ids,
        "expires_at": isotime(info.expires_at, micro=True),
        "issued_at": isotime(info.issued_at, micro=True),
    }
    if info.project_id is not None:
        body["project"] = {"domain": dict(DOMAIN_REF), "id": info.project_id, "name": info.project_name}
        body["is_domain"] = False
        body["roles"] = [{"id": r.id, "name": r.name} for r in info.roles]
        if catalog_entries is not None:
            body["catalog"] = catalog_entries
    if info.app_cred is not None:
        body["application_credential"] = {
            "id": info.app_cred.id,
            "name": info.app_cred.name,
            "restricted": not info.app_cred.unrestricted,
        }
    return {"token": body}


# -- directory entities ------------------------------------------------------------------------


def domain(request: Request, d: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": d["id"],
        "name": d["name"],
        "description": d["description"],
        "enabled": d["enabled"],
        "tags": [],
        "options": {},
        "links": link(request, f"/v3/domains/{d['id']}"),
    }


def project(request: Request, p: dict[str, Any]) -> dict[str, Any]:
    # Extra attributes first: a known field always wins (the schemas also refuse such names).
    return {
        **(p.get("extra") or {}),
        "id": p["id"],
        "name": p["name"],
        "domain_id": p["domain_id"],
        "description": p["description"],
        "enabled": p["enabled"],
        "is_domain": False,
        "parent_id": p["domain_id"],  # flat projects: the parent is the domain, as in Keystone
        "tags": list(p["tags"] or []),
        "options": {},
        "links": link(request, f"/v3/projects/{p['id']}"),
    }


def user(request: Request, u: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        **(u.get("extra") or {}),
        "id": u["id"],
        "name": u["name"],
        "domain_id": u["domain_id"],
        "enabled": u["enabled"],
        "password_expires_at": None,
        "options": {},
        "links": link(request, f"/v3/users/{u['id']}"),
    }
    # Keystone shows these only when set.
    for key in ("default_project_id", "description", "email"):
        if u.get(key) is not None:
            out[key] = u[key]
    return out


def role(request: Request, r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": r["id"],
        "name": r["name"],
        "domain_id": None,
        "description": r.get("description"),
        "options": {"immutable": True} if r["immutable"] else {},
        "links": link(request, f"/v3/roles/{r['id']}"),
    }
    return out


def role_ref(request: Request, r: dict[str, Any]) -> dict[str, Any]:
    """A role as role-inference documents show it."""
    return {"id": r["id"], "name": r["name"], "links": link(request, f"/v3/roles/{r['id']}")}


def role_inference(request: Request, prior: dict[str, Any], implied: list[dict[str, Any]]) -> dict[str, Any]:
    return {"prior_role": role_ref(request, prior), "implies": [role_ref(request, r) for r in implied]}


def assignment(request: Request, a: dict[str, Any], *, names: bool) -> dict[str, Any]:
    base = base_url(request)
    grant = f"{base}/v3/projects/{a['project_id']}/users/{a['user_id']}/roles/{a['prior_role_id'] or a['role_id']}"
    links: dict[str, str] = {"assignment": grant}
    if a["prior_role_id"]:
        links["prior_role"] = f"{base}/v3/roles/{a['prior_role_id']}"
    role_part: dict[str, Any] = {"id": a["role_id"]}
    user_part: dict[str, Any] = {"id": a["user_id"]}
    project_part: dict[str, Any] = {"id": a["project_id"]}
    if names:
        role_part["name"] = a["role_name"]
        user_part.update(name=a["user_name"], domain=dict(DOMAIN_REF))
        project_part.update(name=a["project_name"], domain=dict(DOMAIN_REF))
    return {"links": links, "role": role_part, "scope": {"project": project_part}, "user": user_part}


def app_cred(request: Request, c: dict[str, Any], secret: str | None = None) -> dict[str, Any]:
    """Keystone's application credential; `secret` only in the create response."""
    expires = c["expires_at"]
    out: dict[str, Any] = {
        "id": c["id"],
        "name": c["name"],
        "description": c["description"],
        "user_id": c["user_id"],
        "project_id": c["project_id"],
        "system": None,
        # Naive UTC in Python's isoformat, as Keystone renders it (no "Z").
        "expires_at": None if expires is None else expires.isoformat(),
        "unrestricted": bool(c["unrestricted"]),
        "roles": [
            {
                "id": r["id"],
                "name": r["name"],
                "domain_id": None,
                "description": r.get("description"),
                "options": {"immutable": True} if r.get("immutable") else {},
            }
            for r in c["role_refs"]
        ],
        "links": link(request, f"/v3/users/{c['user_id']}/application_credentials/{c['id']}"),
    }
    if secret is not None:
        out["secret"] = secret
    return out


def ec2_credential(request: Request, c: dict[str, Any]) -> dict[str, Any]:
    return {
        "user_id": c["user_id"],
        "tenant_id": c["project_id"],
        "access": c["access"],
        "secret": c["secret"],
        "trust_id": None,
        "links": link(request, f"/v3/users/{c['user_id']}/credentials/OS-EC2/{c['access']}"),
    }

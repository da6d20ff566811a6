"""Every rule of "Bad input and safety", per API family (identity, compute, image).

Malformed JSON, unknown fields, wrong types, bad UUIDs, names over 255 characters and negative
sizes → 400; unknown ids → 404; quota → 403 with Nova's wording; non-admins on admin APIs → 403;
readers list but do not change (403); expired or revoked tokens → 401; 20 parallel creates
against a quota of 10 instances make exactly 10 servers. Every error body is checked against the
family's native fault format (the fault schemas of each family's openapi_ops module).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import pytest_asyncio
from _asgi_ctx import AsCtx
from fuzz_support import API, FLAVOR, World, assert_fault, create_project, make_ctx, start_world

pytestmark = pytest.mark.asyncio(loop_scope="module")

IMG = "/image/v2"
IDN = "/identity/v3"
LONG = "n" * 256
JSONH = {"Content-Type": "application/json"}
OCCI = "/occi"
OINFRA = "http://schemas.ogf.org/occi/infrastructure#"
OSTORAGE = f'storage; scheme="{OINFRA}"; class="kind"'
OJSONH = {"Content-Type": "application/occi+json", "Accept": "application/occi+json"}


def _ojson(body: Any) -> bytes:
    return json.dumps(body).encode()


def mv(version: str) -> dict[str, str]:
    return {"OpenStack-API-Version": f"compute {version}"}


PAAS = "/paas/rest"
PCAT = f"{PAAS}/catalog"
PENV = f"{PCAT}/org/default/environment"
PINST = f"{PAAS}/envInst/org/default/vdc/{{project}}/environmentInstance"


def _prod(**fields: Any) -> dict[str, Any]:
    return {"productName": "p", "version": "1.0", **fields}


def _tier(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "flavour": "m1.tiny", "image": "busybox", **fields}


def _env(*tiers: dict[str, Any]) -> dict[str, Any]:
    return {"name": "e", "tierDtos": list(tiers)}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async for w in start_world(tmp_path_factory.mktemp("bad-input")):
        yield w


# ---- table of 400s, 404s and 403s -------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    role: str
    method: str
    url: str  # may name {server}, {image}, {project}, {keypair}
    status: int
    json: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    contains: str | None = None


def _srv(**fields: Any) -> dict[str, Any]:
    return {"server": {"name": "vm", "imageRef": "{image}", "flavorRef": FLAVOR, **fields}}


CASES: dict[str, Case] = {
    # --- malformed JSON ---
    "compute-malformed-json": Case("member", "POST", f"{API}/servers", 400, raw=b'{"server": {', headers=JSONH),
    "compute-malformed-utf8": Case("member", "POST", f"{API}/servers", 400, raw=b'{"server": "\xff\xfe"}', headers=JSONH),
    "compute-empty-body": Case("member", "POST", f"{API}/servers", 400, raw=b"", headers=JSONH),
    "compute-action-malformed": Case("member", "POST", f"{API}/servers/{{server}}/action", 400, raw=b"{os-stop}", headers=JSONH),
    "compute-deeply-nested-json": Case("member", "POST", f"{API}/servers", 400, raw=b"[" * 5000, headers=JSONH),
    "image-malformed-json": Case("member", "POST", f"{IMG}/images", 400, raw=b'{"name": ', headers=JSONH),
    "image-patch-malformed": Case("member", "PATCH", f"{IMG}/images/{{image}}", 400, raw=b"[{",
                                  headers={"Content-Type": "application/openstack-images-v2.1-json-patch"}),
    "image-deeply-nested-json": Case("member", "POST", f"{IMG}/images", 400, raw=b"[" * 5000, headers=JSONH),
    "identity-malformed-json": Case("admin", "POST", f"{IDN}/projects", 400, raw=b"{'project': 1}", headers=JSONH),
    "identity-token-malformed": Case("anon", "POST", f"{IDN}/auth/tokens", 400, raw=b"{", headers=JSONH),
    "identity-deeply-nested-json": Case("anon", "POST", f"{IDN}/auth/tokens", 400, raw=b"[" * 5000, headers=JSONH),
    # --- unknown fields ---
    "compute-unknown-field": Case("member", "POST", f"{API}/servers", 400, json=_srv(bogus=1), contains="bogus"),
    "compute-unknown-top-field": Case("member", "POST", f"{API}/servers", 400, json={**_srv(), "extra": {}}),
    "compute-update-unknown": Case("member", "PUT", f"{API}/servers/{{server}}", 400, json={"server": {"colour": "red"}}),
    "compute-keypair-unknown-field": Case("member", "POST", f"{API}/os-keypairs", 400, json={"keypair": {"name": "k", "x": 1}}),
    "compute-unknown-action": Case("member", "POST", f"{API}/servers/{{server}}/action", 400, json={"os-explode": None}),
    "compute-unknown-query-2.75": Case("member", "GET", f"{API}/servers?bogus=1", 400, headers=mv("2.75")),
    "image-unknown-non-string-property": Case("member", "POST", f"{IMG}/images", 400, json={"name": "i", "bogus": {"a": 1}}),
    "image-patch-unknown-op": Case("member", "PATCH", f"{IMG}/images/{{image}}", 400, json=[{"op": "explode", "path": "/name"}],
                                   headers={"Content-Type": "application/openstack-images-v2.1-json-patch"}),
    # Projects and users keep unknown attributes (Keystone's "extra"); other identity bodies refuse them.
    "identity-unknown-field": Case("admin", "POST", f"{IDN}/roles", 400, json={"role": {"name": "r", "colour": "red"}}),
    "identity-reserved-extra": Case("admin", "POST", f"{IDN}/projects", 400, json={"project": {"name": "p", "links": {}}}),
    # --- wrong types ---
    "compute-name-type": Case("member", "POST", f"{API}/servers", 400, json=_srv(name=5)),
    "compute-metadata-type": Case("member", "POST", f"{API}/servers", 400, json=_srv(metadata=["a"])),
    "compute-server-not-object": Case("member", "POST", f"{API}/servers", 400, json={"server": "vm"}),
    "compute-body-array": Case("member", "POST", f"{API}/servers", 400, json=[1, 2]),
    "compute-flavor-ram-type": Case("admin", "POST", f"{API}/flavors", 400,
                                    json={"flavor": {"name": "f", "ram": "lots", "vcpus": 1, "disk": 1}}),
    "image-min-ram-type": Case("member", "POST", f"{IMG}/images", 400, json={"name": "i", "min_ram": "lots"}),
    "image-protected-type": Case("member", "POST", f"{IMG}/images", 400, json={"name": "i", "protected": "yes"}),
    "image-body-array": Case("member", "POST", f"{IMG}/images", 400, json=["name"]),
    "identity-enabled-type": Case("admin", "POST", f"{IDN}/projects", 400, json={"project": {"name": "p", "enabled": "yes"}}),
    "identity-token-methods-type": Case("anon", "POST", f"{IDN}/auth/tokens", 400,
                                        json={"auth": {"identity": {"methods": "password"}}}),
    # --- bad UUIDs ---
    "compute-imageref-not-uuid": Case("member", "POST", f"{API}/servers", 400, json=_srv(imageRef="not-a-uuid")),
    "compute-network-uuid-2.37": Case("member", "POST", f"{API}/servers", 400, headers=mv("2.37"),
                                      json=_srv(networks=[{"uuid": "not-a-uuid"}])),
    "compute-rebuild-not-uuid": Case("member", "POST", f"{API}/servers/{{server}}/action", 400,
                                     json={"rebuild": {"imageRef": "zzz"}}),
    "compute-show-not-uuid": Case("member", "GET", f"{API}/servers/not-a-uuid", 404),
    "compute-services-not-uuid-2.53": Case("admin", "PUT", f"{API}/os-services/not-a-uuid", 400, headers=mv("2.53"),
                                           json={"status": "enabled"}),
    "image-show-not-uuid": Case("member", "GET", f"{IMG}/images/not-a-uuid", 404),
    "image-delete-not-uuid": Case("member", "DELETE", f"{IMG}/images/123", 404),
    "identity-project-not-uuid": Case("admin", "GET", f"{IDN}/projects/not-a-uuid", 404),
    # --- names over 255 characters ---
    "compute-server-name-256": Case("member", "POST", f"{API}/servers", 400, json=_srv(name=LONG)),
    "compute-update-name-256": Case("member", "PUT", f"{API}/servers/{{server}}", 400, json={"server": {"name": LONG}}),
    "compute-keypair-name-256": Case("member", "POST", f"{API}/os-keypairs", 400, json={"keypair": {"name": LONG}}),
    "compute-flavor-name-256": Case("admin", "POST", f"{API}/flavors", 400,
                                    json={"flavor": {"name": LONG, "ram": 64, "vcpus": 1, "disk": 1}}),
    "compute-snapshot-name-256": Case("member", "POST", f"{API}/servers/{{server}}/action", 400,
                                      json={"createImage": {"name": LONG}}),
    "compute-metadata-value-256": Case("member", "POST", f"{API}/servers/{{server}}/metadata", 400,
                                       json={"metadata": {"k": LONG}}),
    "image-name-256": Case("member", "POST", f"{IMG}/images", 400, json={"name": LONG}),
    "image-patch-name-256": Case("member", "PATCH", f"{IMG}/images/{{image}}", 400,
                                 json=[{"op": "replace", "path": "/name", "value": LONG}],
                                 headers={"Content-Type": "application/openstack-images-v2.1-json-patch"}),
    "identity-user-name-256": Case("admin", "POST", f"{IDN}/users", 400, json={"user": {"name": LONG}}),
    "identity-project-name-256": Case("admin", "POST", f"{IDN}/projects", 400, json={"project": {"name": LONG}}),
    # --- negative sizes ---
    "compute-flavor-ram-negative": Case("admin", "POST", f"{API}/flavors", 400,
                                        json={"flavor": {"name": "f", "ram": -1, "vcpus": 1, "disk": 1}}),
    "compute-flavor-disk-negative": Case("admin", "POST", f"{API}/flavors", 400,
                                         json={"flavor": {"name": "f", "ram": 64, "vcpus": 1, "disk": -5}}),
    "compute-min-count-zero": Case("member", "POST", f"{API}/servers", 400, json=_srv(min_count=0)),
    "compute-max-count-negative": Case("member", "POST", f"{API}/servers", 400, json=_srv(max_count=-3)),
    "compute-list-limit-negative": Case("member", "GET", f"{API}/servers?limit=-1", 400),
    "compute-flavor-list-limit-negative": Case("member", "GET", f"{API}/flavors?limit=-1", 400),
    "compute-console-length-negative": Case("member", "POST", f"{API}/servers/{{server}}/action", 400,
                                            json={"os-getConsoleOutput": {"length": -5}}),
    "compute-quota-below-minus-one": Case("admin", "PUT", f"{API}/os-quota-sets/{{project}}", 400,
                                          json={"quota_set": {"instances": -2}}),
    "image-min-disk-negative": Case("member", "POST", f"{IMG}/images", 400, json={"name": "i", "min_disk": -1}),
    "image-min-ram-negative": Case("member", "POST", f"{IMG}/images", 400, json={"name": "i", "min_ram": -512}),
    "image-list-limit-negative": Case("member", "GET", f"{IMG}/images?limit=-1", 400),
    "image-size-header-negative": Case("member", "PUT", f"{IMG}/images/{{image}}/file", 400, raw=b"abc",
                                       headers={"Content-Type": "application/octet-stream", "x-openstack-image-size": "-3"}),
    # --- unknown ids ---
    "compute-server-unknown": Case("member", "GET", f"{API}/servers/{uuid.uuid4()}", 404),
    "compute-server-delete-unknown": Case("member", "DELETE", f"{API}/servers/{uuid.uuid4()}", 404),
    "compute-server-action-unknown": Case("member", "POST", f"{API}/servers/{uuid.uuid4()}/action", 404, json={"os-stop": None}),
    "compute-flavor-unknown": Case("member", "GET", f"{API}/flavors/no-such-flavor", 404),
    "compute-keypair-unknown": Case("member", "GET", f"{API}/os-keypairs/no-such-key", 404),
    "compute-instance-action-unknown": Case("member", "GET", f"{API}/servers/{{server}}/os-instance-actions/req-{uuid.uuid4()}", 404),
    "compute-route-unknown": Case("member", "GET", f"{API}/no-such-thing", 404),
    "compute-create-unknown-image": Case("member", "POST", f"{API}/servers", 400, json=_srv(imageRef=str(uuid.uuid4()))),
    "compute-create-unknown-flavor": Case("member", "POST", f"{API}/servers", 400, json=_srv(flavorRef="no-such-flavor")),
    "image-unknown": Case("member", "GET", f"{IMG}/images/{uuid.uuid4()}", 404),
    "image-file-unknown": Case("member", "GET", f"{IMG}/images/{uuid.uuid4()}/file", 404),
    "image-patch-unknown": Case("member", "PATCH", f"{IMG}/images/{uuid.uuid4()}", 404, json=[],
                                headers={"Content-Type": "application/openstack-images-v2.1-json-patch"}),
    "image-delete-unknown": Case("member", "DELETE", f"{IMG}/images/{uuid.uuid4()}", 404),
    "identity-user-unknown": Case("admin", "GET", f"{IDN}/users/{uuid.uuid4().hex}", 404),
    "identity-role-unknown": Case("admin", "GET", f"{IDN}/roles/{uuid.uuid4().hex}", 404),
    # --- non-admin on admin APIs ---
    "compute-flavor-create-member": Case("member", "POST", f"{API}/flavors", 403,
                                         json={"flavor": {"name": "f", "ram": 64, "vcpus": 1, "disk": 1}}),
    "compute-flavor-delete-member": Case("member", "DELETE", f"{API}/flavors/{FLAVOR}", 403),
    "compute-services-member": Case("member", "GET", f"{API}/os-services", 403),
    "compute-hypervisors-member": Case("member", "GET", f"{API}/os-hypervisors", 403),
    "compute-hypervisor-stats-member": Case("member", "GET", f"{API}/os-hypervisors/statistics", 403),
    "compute-quota-update-member": Case("member", "PUT", f"{API}/os-quota-sets/{{project}}", 403,
                                        json={"quota_set": {"instances": 100}}),
    "compute-diagnostics-member": Case("member", "GET", f"{API}/servers/{{server}}/diagnostics", 403),
    "compute-az-detail-member": Case("member", "GET", f"{API}/os-availability-zone/detail", 403),
    "compute-quota-other-project-member": Case("member", "GET", f"{API}/os-quota-sets/{{other}}", 403),
    "image-publicize-member": Case("member", "POST", f"{IMG}/images", 403, json={"name": "i", "visibility": "public"}),
    "identity-user-create-member": Case("member", "POST", f"{IDN}/users", 403, json={"user": {"name": "u"}}),
    "identity-project-create-member": Case("member", "POST", f"{IDN}/projects", 403, json={"project": {"name": "p"}}),
    "identity-role-create-member": Case("member", "POST", f"{IDN}/roles", 403, json={"role": {"name": "r"}}),
    "identity-users-list-member": Case("member", "GET", f"{IDN}/users", 403),
    # --- a reader can list but not change ---
    "compute-create-reader": Case("reader", "POST", f"{API}/servers", 403, json=_srv()),
    "compute-update-reader": Case("reader", "PUT", f"{API}/servers/{{server}}", 403, json={"server": {"name": "x"}}),
    "compute-delete-reader": Case("reader", "DELETE", f"{API}/servers/{{server}}", 403),
    "compute-stop-reader": Case("reader", "POST", f"{API}/servers/{{server}}/action", 403, json={"os-stop": None}),
    "compute-metadata-reader": Case("reader", "POST", f"{API}/servers/{{server}}/metadata", 403, json={"metadata": {"a": "b"}}),
    "compute-keypair-create-reader": Case("reader", "POST", f"{API}/os-keypairs", 403, json={"keypair": {"name": "r"}}),
    "compute-keypair-delete-reader": Case("reader", "DELETE", f"{API}/os-keypairs/{{keypair}}", 403),
    "image-create-reader": Case("reader", "POST", f"{IMG}/images", 403, json={"name": "r"}),
    "image-patch-reader": Case("reader", "PATCH", f"{IMG}/images/{{image}}", 403,
                               json=[{"op": "replace", "path": "/name", "value": "r"}],
                               headers={"Content-Type": "application/openstack-images-v2.1-json-patch"}),
    "image-delete-reader": Case("reader", "DELETE", f"{IMG}/images/{{image}}", 403),
    "image-upload-reader": Case("reader", "PUT", f"{IMG}/images/{{image}}/file", 403, raw=b"x",
                                headers={"Content-Type": "application/octet-stream"}),
    "image-tag-reader": Case("reader", "PUT", f"{IMG}/images/{{image}}/tags/r", 403),
    # --- OCCI (GFD.223 statuses; occi.faults' format: a text line, or {"error": ...} in JSON) ---
    "occi-malformed-json": Case("member", "POST", f"{OCCI}/storage/", 400, raw=b'{"kind": ', headers=OJSONH),
    "occi-deeply-nested-json": Case("member", "POST", f"{OCCI}/storage/", 400, raw=b"[" * 5000, headers=OJSONH),
    "occi-malformed-category": Case("member", "POST", f"{OCCI}/storage/", 400,
                                    headers={"Content-Type": "text/occi", "Category": 'storage; scheme="unterminated'}),
    "occi-malformed-attribute": Case("member", "POST", f"{OCCI}/storage/", 400, headers={
        "Content-Type": "text/occi", "Category": OSTORAGE, "X-OCCI-Attribute": "no equals sign"}),
    "occi-unknown-attribute": Case("member", "POST", f"{OCCI}/storage/", 400, headers=OJSONH, contains="occi.storage.colour",
                                   raw=_ojson({"kind": OINFRA + "storage", "attributes": {"occi.storage.size": 1,
                                                                                          "occi.storage.colour": "red"}})),
    "occi-wrong-type": Case("member", "POST", f"{OCCI}/storage/", 400, headers=OJSONH, contains="occi.storage.size",
                            raw=_ojson({"kind": OINFRA + "storage", "attributes": {"occi.storage.size": "big"}})),
    "occi-missing-required": Case("member", "POST", f"{OCCI}/storage/", 400, contains="occi.storage.size",
                                  headers={"Content-Type": "text/occi", "Category": OSTORAGE}),
    # (an immutable attribute repeated at its current value is dropped, so a PUT of the own rendering works)
    "occi-immutable": Case("member", "POST", f"{OCCI}/compute/{{server}}", 400, contains="occi.compute.state.message",
                           headers={"Content-Type": "text/occi",
                                    "X-OCCI-Attribute": 'occi.compute.state.message="not what it says"'}),
    "occi-unknown-mixin": Case("member", "POST", f"{OCCI}/storage/", 400, contains="nope", headers={
        "Content-Type": "text/occi", "Category": f'{OSTORAGE}, nope; scheme="http://example.com/x#"; class="mixin"',
        "X-OCCI-Attribute": "occi.storage.size=1"}),
    "occi-wrong-kind": Case("member", "POST", f"{OCCI}/storage/", 400,
                            headers={"Content-Type": "text/occi", "Category": f'network; scheme="{OINFRA}"; class="kind"'}),
    "occi-unknown-action": Case("member", "POST", f"{OCCI}/compute/{{server}}?action=explode", 400, contains="explode",
                                headers={"Content-Type": "text/occi"}),
    "occi-unknown-content-type": Case("member", "POST", f"{OCCI}/storage/", 415, raw=b"<storage/>",
                                      headers={"Content-Type": "application/xml"}),
    "occi-uri-list-on-entity": Case("member", "GET", f"{OCCI}/compute/{{server}}", 400, headers={"Accept": "text/uri-list"}),
    "occi-not-acceptable": Case("member", "GET", f"{OCCI}/-/", 406, headers={"Accept": "application/xml"}),
    "occi-page-too-large": Case("member", "GET", f"{OCCI}/compute/?page=1&number=100000", 413),
    "occi-page-not-a-number": Case("member", "GET", f"{OCCI}/compute/?page=one&number=2", 400),
    "occi-version-too-high": Case("member", "GET", f"{OCCI}/-/", 501, headers={"User-Agent": "client/1 OCCI/1.3"}),
    "occi-unknown-entity": Case("member", "GET", f"{OCCI}/compute/{uuid.uuid4()}", 404),
    "occi-unknown-entity-delete": Case("member", "DELETE", f"{OCCI}/storage/{uuid.uuid4()}", 404),
    "occi-unknown-entity-action": Case("member", "POST", f"{OCCI}/compute/{uuid.uuid4()}?action=start", 404,
                                       headers={"Content-Type": "text/occi"}),
    "occi-unknown-path": Case("member", "GET", f"{OCCI}/no/such/thing", 404),
    "occi-unknown-collection": Case("member", "GET", f"{OCCI}/nothing/", 404),
    "occi-method-not-allowed": Case("member", "PATCH", f"{OCCI}/compute/{{server}}", 405),
    "occi-put-on-kind-collection": Case("member", "PUT", f"{OCCI}/compute/", 405),
    "occi-provider-mixin-delete": Case("member", "DELETE", f"{OCCI}/-/", 403, headers={"Category": OSTORAGE}),
    "occi-create-reader": Case("reader", "POST", f"{OCCI}/storage/", 403, headers={
        "Content-Type": "text/occi", "Category": OSTORAGE, "X-OCCI-Attribute": "occi.storage.size=1"}),
    "occi-delete-reader": Case("reader", "DELETE", f"{OCCI}/compute/{{server}}", 403),
    "occi-stop-reader": Case("reader", "POST", f"{OCCI}/compute/{{server}}?action=stop", 403,
                             headers={"Content-Type": "text/occi"}),
    # --- PaaS (Pegasus's {"message", "code"}; acceptance 6 of issue 13: each names the problem) ---
    "paas-malformed-json": Case("member", "POST", f"{PCAT}/productRelease", 400, raw=b'{"productName": ', headers=JSONH),
    "paas-deeply-nested-json": Case("member", "POST", f"{PCAT}/productRelease", 400, raw=b"[" * 5000, headers=JSONH),
    "paas-empty-body": Case("member", "POST", f"{PCAT}/productRelease", 400, raw=b"", headers=JSONH),
    "paas-product-no-version": Case("member", "POST", f"{PCAT}/productRelease", 400, json={"productName": "p"},
                                    contains="version is required"),
    "paas-malformed-attribute-key": Case("member", "POST", f"{PCAT}/productRelease", 400, contains="malformed attribute key",
                                         json=_prod(attributes=[{"key": "1-BAD KEY", "value": "v"}])),
    "paas-attribute-nul": Case("member", "POST", f"{PCAT}/productRelease", 400, contains="NUL",
                               json=_prod(attributes=[{"key": "K", "value": "a\x00b"}])),
    "paas-attribute-too-long": Case("member", "POST", f"{PCAT}/productRelease", 400, contains="4096 bytes",
                                    json=_prod(attributes=[{"key": "K", "value": "x" * 4097}])),
    "paas-attribute-bad-type": Case("member", "POST", f"{PCAT}/productRelease", 400, contains="unknown attribute type",
                                    json=_prod(attributes=[{"key": "K", "value": "v", "type": "Magic"}])),
    "paas-bad-ports": Case("member", "POST", f"{PCAT}/productRelease", 400, contains="70000",
                           json=_prod(metadatas=[{"key": "open_ports", "value": "80 70000"}])),
    "paas-installator": Case("member", "POST", f"{PCAT}/productRelease", 400, contains="chef",
                             json=_prod(metadatas=[{"key": "installator", "value": "chef"}])),
    "paas-unknown-recipe": Case("member", "POST", f"{PCAT}/productRelease", 400, contains="backup",
                                json=_prod(recipes={"backup": "true"})),
    "paas-product-reader": Case("reader", "POST", f"{PCAT}/productRelease", 403, json=_prod()),
    "paas-public-product-member": Case("member", "POST", f"{PCAT}/productRelease", 403, contains="paas:product:publish",
                                       json=_prod(metadatas=[{"key": "public", "value": "yes"}])),
    "paas-unknown-product": Case("member", "GET", f"{PCAT}/productRelease/nope-1.0", 404),
    "paas-cyclic-tiers": Case("member", "POST", f"{PENV}", 400, contains="tier dependency cycle: backend -> web -> backend",
                              json=_env(_tier("web", metadatas=[{"key": "dep1", "value": "backend"}]),
                                        _tier("backend", metadatas=[{"key": "dep1", "value": "web"}]))),
    "paas-tier-unknown-product": Case("member", "POST", f"{PENV}", 400, contains="unknown product release nope-1.0 in tier web",
                                      json=_env(_tier("web", productReleaseDtos=[{"productName": "nope", "version": "1.0"}]))),
    "paas-min-over-max": Case("member", "POST", f"{PENV}", 400,
                              contains="minimumNumberInstances 3 is greater than maximumNumberInstances 1",
                              json=_env(_tier("web", minimumNumberInstances=3, maximumNumberInstances=1))),
    "paas-initial-outside": Case("member", "POST", f"{PENV}", 400, contains="initialNumberInstances 5",
                                 json=_env(_tier("web", initialNumberInstances=5, maximumNumberInstances=2))),
    "paas-min-not-a-number": Case("member", "POST", f"{PENV}", 400, contains="minimumNumberInstances",
                                  json=_env(_tier("web", minimumNumberInstances="one"))),
    "paas-tier-ref-unknown-tier": Case("member", "POST", f"{PENV}", 400, contains="'nowhere'", json=_env(_tier(
        "web", productReleaseDtos=[{"productName": "nope", "attributes": [{"key": "B", "value": "IP(nowhere)", "type": "IP"}]}]))),
    "paas-tier-malformed-ref": Case("member", "POST", f"{PENV}", 400, contains="IPALL(<tier>)", json=_env(_tier(
        "web", productReleaseDtos=[{"productName": "p", "attributes": [{"key": "B", "value": "backend", "type": "IPALL"}]}]))),
    "paas-policy-min-step": Case("member", "POST", f"{PENV}", 400, contains="min_adjustment_step", json=_env(_tier(
        "web", scalingPolicies=[{"name": "up", "metric": "cpu", "comparison": "gt", "threshold": 80,
                                 "scalingAdjustment": 1, "minAdjustmentStep": 2}]))),
    "paas-tierdtos-not-a-list": Case("member", "POST", f"{PENV}", 400, contains="tierDtos", json={"name": "e", "tierDtos": "x"}),
    "paas-env-reader": Case("reader", "POST", f"{PENV}", 403, json=_env(_tier("web"))),
    "paas-other-org": Case("member", "GET", f"{PCAT}/org/other/environment", 404),
    "paas-other-vdc": Case("member", "GET", f"{PCAT}/org/default/vdc/{{other}}/environment", 404),
    "paas-unknown-environment": Case("member", "GET", f"{PENV}/nope", 404),
    "paas-unknown-instance": Case("member", "GET", f"{PINST}/nope", 404),
    "paas-deploy-unknown-environment": Case("member", "POST", PINST, 400, contains="environment nope not found",
                                            json={"blueprintName": "x", "environmentDto": {"name": "nope"}}),
    "paas-deploy-bad-name": Case("member", "POST", PINST, 400, contains="blueprintName",
                                 json={"blueprintName": "bad name!", "environmentDto": {"name": "e"}}),
    "paas-deploy-reader": Case("reader", "POST", PINST, 403, json={"blueprintName": "x", "environmentDto": {"name": "e"}}),
    "paas-unknown-task": Case("member", "GET", f"{PAAS}/vdc/{{project}}/task/999999", 404),
    "paas-task-not-a-number": Case("member", "GET", f"{PAAS}/vdc/{{project}}/task/abc", 404),
    "paas-other-vdc-task": Case("member", "GET", f"{PAAS}/vdc/{{other}}/task/1", 404),
    "paas-not-acceptable": Case("member", "GET", f"{PCAT}/productRelease", 406, headers={"Accept": "application/xml"}),
    "paas-unsupported-media-type": Case("member", "POST", f"{PCAT}/productRelease", 415, raw=b"<productRelease/>",
                                        headers={"Content-Type": "application/xml"}),
    "paas-method-not-allowed": Case("member", "PATCH", f"{PCAT}/productRelease", 405),
    "paas-unknown-path": Case("member", "GET", f"{PAAS}/nothing/here", 404),
    "paas-anonymous": Case("anon", "GET", f"{PCAT}/productRelease", 401),
}


def _fill(text: str, w: World) -> str:
    return (text.replace("{server}", w.server_id).replace("{image}", w.image_id).replace("{project}", w.project)
            .replace("{keypair}", w.keypair).replace("{other}", w.other_project))


def _fill_json(value: Any, w: World) -> Any:
    if isinstance(value, str):
        return _fill(value, w)
    if isinstance(value, dict):
        return {k: _fill_json(v, w) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_json(v, w) for v in value]
    return value


async def _client(w: World, role: str) -> httpx.AsyncClient:
    if role == "anon":
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=w.cloud.asgi_app()), base_url="http://cumulo.test")
    return w.clients[role]


@pytest.mark.parametrize("name", list(CASES))
async def test_rule(world: World, name: str) -> None:
    await world.ensure()
    case = CASES[name]
    client = await _client(world, case.role)
    content = case.raw if case.raw is not None else None
    kwargs: dict[str, Any] = {"headers": case.headers}
    if content is not None:
        kwargs["content"] = content
    elif case.json is not None:
        kwargs["json"] = _fill_json(case.json, world)
    try:
        resp = await client.request(case.method, _fill(case.url, world), **kwargs)
    except Exception as exc:  # the app crashed: a real server answers 500
        raise AssertionError(f"{name}: app raised {exc!r}") from exc
    assert_fault(resp, case.status, case.contains)


async def test_readers_can_list_and_show(world: World) -> None:
    await world.ensure()
    reader = world.clients["reader"]
    for url in (f"{API}/servers", f"{API}/servers/detail", f"{API}/servers/{world.server_id}", f"{API}/flavors",
                f"{API}/os-keypairs", f"{API}/limits", f"{API}/servers/{world.server_id}/metadata",
                f"{IMG}/images", f"{IMG}/images/{world.image_id}", f"{API}/os-quota-sets/{world.project}"):
        resp = await reader.get(url)
        assert resp.status_code == 200, (url, resp.text)
    ids = [s["id"] for s in (await reader.get(f"{API}/servers")).json()["servers"]]
    assert world.server_id in ids


async def test_oversized_json_body_is_413(world: World) -> None:
    body = b'{"server": {"name": "' + b"x" * (2 << 20) + b'"}}'
    resp = await world.member.post(f"{API}/servers", content=body, headers=JSONH)
    assert_fault(resp, 413)
    resp = await world.member.post(f"{IMG}/images", content=body, headers=JSONH)
    assert_fault(resp, 413)
    resp = await world.member.post(f"{PCAT}/productRelease", content=body, headers=JSONH)
    assert_fault(resp, 413)


async def test_image_patch_wrong_media_type_is_415(world: World) -> None:
    await world.ensure()
    resp = await world.member.patch(f"{IMG}/images/{world.image_id}", json=[], headers=JSONH)
    assert_fault(resp, 415)


# ---- quotas -----------------------------------------------------------------------------------


async def _project_member(w: World, name: str) -> httpx.AsyncClient:
    project = await create_project(w.cloud.asgi_app(), name)
    ctx = make_ctx(project, "member")
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(w.cloud.asgi_app(), ctx)), base_url="http://cumulo.test")


async def _server_count(w: World, project: str) -> int:
    resp = await w.admin.get(f"{API}/servers", params={"all_tenants": "1", "project_id": project})
    assert resp.status_code == 200, resp.text
    return len(resp.json()["servers"])


async def test_quota_exceeded_has_novas_wording(world: World) -> None:
    await world.ensure()
    member = await _project_member(world, "quota")
    body = {"server": {"name": "q", "imageRef": world.ids["public_image"][0], "flavorRef": FLAVOR}}
    resp = await member.post(f"{API}/servers", json={"server": {**body["server"], "min_count": 10, "max_count": 10}})
    assert resp.status_code == 202, resp.text
    resp = await member.post(f"{API}/servers", json=body)
    assert_fault(resp, 403, "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances")


async def test_quota_holds_under_concurrency(world: World) -> None:
    """20 parallel creates against the default quota of 10 instances: exactly 10 servers."""
    await world.ensure()
    member = await _project_member(world, "race")
    limits = (await member.get(f"{API}/limits")).json()
    body = {"server": {"name": "race", "imageRef": world.ids["public_image"][0], "flavorRef": FLAVOR}}
    results = await asyncio.gather(*(member.post(f"{API}/servers", json=body) for _ in range(20)))
    codes = sorted(r.status_code for r in results)
    assert codes == [202] * 10 + [403] * 10, [(r.status_code, r.text[:200]) for r in results]
    for r in results:
        if r.status_code == 403:
            assert_fault(r, 403, "Quota exceeded for instances")
    listed = (await member.get(f"{API}/servers")).json()["servers"]
    assert len(listed) == 10
    assert limits["limits"]["absolute"]["maxTotalInstances"] == 10


# ---- tokens -----------------------------------------------------------------------------------


async def _token(anon: httpx.AsyncClient, creds: dict[str, str], user: str) -> str:
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": creds["password"]}}},
            "scope": {"project": {"id": creds["project_id"]} if creds.get("project_id")
                      else {"name": creds["project"], "domain": {"id": "default"}}},
        }
    }
    resp = await anon.post(f"{IDN}/auth/tokens", json=body)
    assert resp.status_code == 201, resp.text
    return resp.headers["X-Subject-Token"]


TOKEN_PROBES = (f"{API}/servers", f"{API}/flavors", f"{IMG}/images", f"{IDN}/auth/projects", f"{OCCI}/-/",
                f"{PCAT}/productRelease")


async def test_revoked_token_is_401_everywhere(world: World) -> None:
    anon = await _client(world, "anon")
    creds = world.cloud.credentials["demo"]
    token = await _token(anon, creds, "demo")
    for url in TOKEN_PROBES:
        resp = await anon.get(url, headers={"X-Auth-Token": token})
        assert resp.status_code == 200, (url, resp.text)
    resp = await anon.delete(f"{IDN}/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token})
    assert resp.status_code == 204, resp.text
    for url in TOKEN_PROBES:
        assert_fault(await anon.get(url, headers={"X-Auth-Token": token}), 401)
    # A fresh token of the same user still works: revocation is per token.
    other = await _token(anon, creds, "demo")
    assert (await anon.get(f"{API}/servers", headers={"X-Auth-Token": other})).status_code == 200


async def test_expired_token_is_401_everywhere(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from cumulo.db import utcnow

    anon = await _client(world, "anon")
    creds = world.cloud.credentials["admin"]
    token = await _token(anon, creds, "admin")
    assert (await anon.get(f"{API}/os-services", headers={"X-Auth-Token": token})).status_code == 200
    # Move the identity service's clock past the token's lifetime (cached validations included).
    later = utcnow() + dt.timedelta(seconds=world.cloud.conf.token_ttl_seconds + 5)
    monkeypatch.setattr("cumulo.identity.service.utcnow", lambda: later)
    for url in (*TOKEN_PROBES, f"{API}/os-services"):
        assert_fault(await anon.get(url, headers={"X-Auth-Token": token}), 401)


async def test_missing_or_garbage_token_is_401(world: World) -> None:
    anon = await _client(world, "anon")
    for url in TOKEN_PROBES:
        assert_fault(await anon.get(url), 401)
        assert_fault(await anon.get(url, headers={"X-Auth-Token": "garbage" * 20}), 401)


# ---- extreme values: numbers beyond 64 bits and dates beyond year 1..9999 --------------------
# Found by the fuzz: each once reached the database or datetime arithmetic unchecked (a 500).

BIG = "99999999999999999999"
EXTREMES: list[tuple[str, str, str, dict[str, str]]] = [
    ("member", "GET", f"{API}/flavors?minRam={BIG}", {}),
    ("member", "GET", f"{API}/flavors/detail?minDisk={BIG}", {}),
    ("member", "GET", f"{API}/flavors?minDisk=-{BIG}", {}),
    ("admin", "GET", f"{API}/os-hypervisors?marker={BIG}", mv("2.33")),
    ("admin", "GET", f"{API}/os-hypervisors/{BIG}", {}),
    ("admin", "GET", f"{API}/os-hypervisors/{BIG}/uptime", {}),
    ("admin", "DELETE", f"{API}/os-services/{BIG}", {}),
    ("admin", "DELETE", f"{API}/os-services/-{BIG}", {}),
    ("member", "GET", f"{API}/servers?changes-since=9999-12-31T23:59:59-23:59", {}),
    ("member", "GET", f"{API}/servers/detail?changes-since=0001-01-01T00:00:00%2B23:59", {}),
    ("member", "GET", f"{API}/servers/{{server}}/os-instance-actions?changes-since=0001-01-01T00:00:00%2B23:59", mv("2.58")),
    ("member", "GET", f"{API}/servers/{{server}}/os-instance-actions?changes-before=9999-12-31T23:59:59-23:59", mv("2.66")),
    ("member", "GET", f"{IMG}/images?size_min={BIG}", {}),
    ("member", "GET", f"{IMG}/images?size_max={BIG}", {}),
    ("member", "GET", f"{IMG}/images?min_ram={BIG}", {}),
    ("member", "GET", f"{IMG}/images?min_disk=-{BIG}", {}),
    ("member", "GET", f"{IMG}/images?virtual_size={BIG}", {}),
    ("member", "GET", f"{IMG}/images?created_at=gt:9999-12-31T23:59:59-23:59", {}),
    ("member", "GET", f"{IMG}/images?updated_at=lt:0001-01-01T00:00:00%2B23:59", {}),
    ("member", "GET", f"{API}/servers?limit={BIG}", {}),
    ("member", "GET", f"{IMG}/images?limit={BIG}", {}),
]


@pytest.mark.parametrize(("role", "method", "url", "headers"), EXTREMES, ids=[f"{m} {u}" for _, m, u, _ in EXTREMES])
async def test_extreme_values_are_client_errors(world: World, role: str, method: str, url: str, headers: dict[str, str]) -> None:
    await world.ensure()
    try:
        resp = await world.clients[role].request(method, _fill(url, world), headers=headers)
    except Exception as exc:  # the app crashed: a real server answers 500
        raise AssertionError(f"{method} {url}: app raised {exc!r}") from exc
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        assert_fault(resp, resp.status_code)


# ---- another project's servers are hidden (Nova: 404, never 403) -------------------------------
# Tempest test_update_server_of_another_tenant / test_delete_a_server_of_another_tenant: the lookup
# is scoped to the caller's project before any policy check, so a stranger cannot even learn that
# the server exists, whatever its role there.

FOREIGN: list[tuple[str, str, Any]] = [
    ("PUT", "", {"server": {"name": "stolen"}}),
    ("DELETE", "", None),
    ("GET", "", None),
    ("POST", "/action", {"os-stop": None}),
    ("POST", "/action", {"os-start": None}),
    ("POST", "/action", {"reboot": {"type": "HARD"}}),
    ("POST", "/action", {"lock": None}),
    ("POST", "/action", {"unlock": None}),
    ("POST", "/action", {"pause": None}),
    ("POST", "/action", {"suspend": None}),
    ("POST", "/action", {"createImage": {"name": "stolen"}}),
    ("POST", "/action", {"os-getConsoleOutput": {"length": 3}}),
    ("POST", "/action", {"rebuild": {"imageRef": "{image}"}}),
    ("POST", "/action", {"resize": {"flavorRef": "1"}}),
    ("POST", "/action", {"confirmResize": None}),
    ("GET", "/metadata", None),
    ("POST", "/metadata", {"metadata": {"a": "b"}}),
    ("PUT", "/metadata/k", {"meta": {"k": "x"}}),
    ("DELETE", "/metadata/k", None),
    ("GET", "/os-instance-actions", None),
    ("GET", "/ips", None),
    ("GET", "/diagnostics", None),
]


@pytest.mark.parametrize("role", ["member", "reader", "admin-less-stranger"])
async def test_another_projects_server_is_404(world: World, role: str) -> None:
    await world.ensure()
    if role == "admin-less-stranger":
        # A real user with a real token in another project (the whole Keystone path).
        anon = await _client(world, "anon")
        admin = world.cloud.credentials["admin"]
        admin_token = await _token(anon, admin, "admin")
        h = {"X-Auth-Token": admin_token}
        name = f"stranger-{uuid.uuid4().hex[:6]}"
        r = await anon.post(f"{IDN}/users", json={"user": {"name": name, "password": "pw-stranger-1"}}, headers=h)
        assert r.status_code == 201, r.text
        uid = r.json()["user"]["id"]
        roles = {x["name"]: x["id"] for x in (await anon.get(f"{IDN}/roles", headers=h)).json()["roles"]}
        r = await anon.put(f"{IDN}/projects/{world.other_project}/users/{uid}/roles/{roles['member']}", headers=h)
        assert r.status_code == 204, r.text
        token = await _token(anon, {"password": "pw-stranger-1", "project": "", "project_id": world.other_project}, name)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=world.cloud.asgi_app()), base_url="http://cumulo.test",
                                   headers={"X-Auth-Token": token})
    else:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=AsCtx(world.cloud.asgi_app(), make_ctx(world.other_project, role))),
                                   base_url="http://cumulo.test")
    async with client:
        for version in ("2.1", "latest"):
            for method, sub, body in FOREIGN:
                url = f"{API}/servers/{world.server_id}{sub}"
                kwargs: dict[str, Any] = {} if body is None else {"json": _fill_json(body, world)}
                resp = await client.request(method, url, headers=mv(version), **kwargs)
                assert_fault(resp, 404)
                assert "could not be found" in resp.text, (version, method, sub, resp.text)
    # The server is untouched, and an admin of any project still sees it.
    seen = await world.admin.get(f"{API}/servers/{world.server_id}")
    assert seen.status_code == 200 and seen.json()["server"]["name"] != "stolen", seen.text

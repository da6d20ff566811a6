"""Fuzz of the OCCI front door (/occi): every route shape and method, as a member and a reader, with
valid, broken and malformed renderings: text/occi header lines, text/plain bodies and OCCI JSON documents, mutated (truncated, spliced with hostile characters, lone surrogates,
wrong types), and random Accept headers. Nothing may answer 5xx; every 4xx is OCCI's fault (a text
line, or {"error": {code, message}} in JSON) with the Server header naming OCCI/1.2.

OCCI has no OpenAPI document, so the requests come from the renderings' grammar (GFD.229, the JSON
rendering) rather than a schema."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fuzz_support import FLAVOR, World, start_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.asyncio(loop_scope="module")

FUZZ = settings(max_examples=int(os.environ.get("CUMULO_FUZZ_EXAMPLES", "8")), deadline=None, derandomize=True,
                database=None, suppress_health_check=list(HealthCheck))
INFRA = "http://schemas.ogf.org/occi/infrastructure#"
KINDS = ("compute", "storage", "network", "networkinterface", "storagelink")
ACTIONS = ("start", "stop", "restart", "suspend", "save", "online", "offline", "backup", "snapshot", "resize", "up",
           "down", "explode", "")
ACCEPTS = ("text/plain", "text/occi", "application/occi+json", "text/uri-list", "application/json", "*/*",
           "text/*;q=0.5, application/occi+json", "application/xml", "", "text/plain;q=x", "a" * 300)
ROUTES = ("/occi/-/", "/occi/.well-known/org/ogf/occi/-/", "/occi/", "/occi/{kind}/", "/occi/{kind}/{id}",
          "/occi/compute/{server}", "/occi/compute/{server}?action={action}", "/occi/{kind}/?action={action}",
          "/occi/{junk}/", "/occi/{kind}/{id}?page={page}&number={page}", "/occi/os_tpl/")
HOSTILE = ("\ud800", "\x00", "\r\n", '"', ";", ",", "=", "\\", "#", "<", ">", "é", "\u202e", " " * 3, "9" * 40)


def _category(term: str, cls: str = "kind", scheme: str = INFRA) -> str:
    return f'{term}; scheme="{scheme}"; class="{cls}"'


def _mutate(text: str, draw: Any) -> str:
    how = draw(st.sampled_from(("keep", "truncate", "splice", "replace")))
    if how == "keep" or not text:
        return text
    at = draw(st.integers(0, len(text)))
    if how == "truncate":
        return text[:at]
    piece = draw(st.sampled_from(HOSTILE) | st.text(max_size=8))
    if how == "splice":
        return text[:at] + piece + text[at:]
    return text[:at] + piece


@st.composite
def occi_lines(draw: Any, server: str, image: str) -> list[tuple[str, str]]:
    """Header fields of a text rendering (Category, X-OCCI-Attribute, Link, X-OCCI-Location)."""
    kind = draw(st.sampled_from(KINDS))
    fields: list[tuple[str, str]] = [("Category", _category(kind))]
    if draw(st.booleans()):
        fields.append(("Category", _category(image, "mixin", "http://schemas.openstack.org/template/os#")))
    if draw(st.booleans()):
        fields.append(("Category", _category(FLAVOR, "mixin", "http://schemas.openstack.org/template/resource#")))
    names = ("occi.core.title", "occi.compute.cores", "occi.storage.size", "occi.network.address", "occi.core.source",
             "occi.core.target", "method", "name", "size", "occi.compute.state", "bogus.attr")
    values = ('"x"', "1", "-1", "1.5", "true", f'"/compute/{server}"', '"10.9.0.0/24"', '"graceful"', '""', "1e999")
    for _ in range(draw(st.integers(0, 3))):
        fields.append(("X-OCCI-Attribute", f"{draw(st.sampled_from(names))}={draw(st.sampled_from(values))}"))
    if draw(st.booleans()):
        fields.append(("Link", f'</network/{server}>; rel="{INFRA}network"; category="{INFRA}networkinterface"'))
    if draw(st.booleans()):
        fields.append(("X-OCCI-Location", f"http://cumulo.test/occi/compute/{server}"))
    return [(k, _mutate(v, draw)) for k, v in fields]


@st.composite
def json_bodies(draw: Any, server: str) -> Any:
    base: dict[str, Any] = {
        "kind": INFRA + draw(st.sampled_from(KINDS)),
        "attributes": {"occi.storage.size": 1, "occi.core.title": "f"},
        "mixins": [INFRA + "ipnetwork"],
        "links": [{"target": {"location": f"/network/{server}"}, "kind": INFRA + "networkinterface"}],
        "action": INFRA.removesuffix("#") + "/compute/action#stop",
        "mixins_def": None,
    }
    junk = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10),
                     st.sampled_from(HOSTILE), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                                                  st.integers(), max_size=2))
    for key in draw(st.lists(st.sampled_from(sorted(base)), max_size=3, unique=True)):
        base[key] = draw(junk)
    if draw(st.booleans()):
        base[draw(st.text(max_size=6))] = draw(junk)
    return draw(st.sampled_from((base, [base], base["attributes"], "x", 5)))


def _fill(route: str, w: World, draw: Any) -> str:
    return (route.replace("{kind}", draw(st.sampled_from(KINDS))).replace("{server}", w.server_id)
            .replace("{id}", draw(st.sampled_from((w.server_id, "00000000-0000-0000-0000-000000000000", "x" * 300, "%00"))))
            .replace("{action}", draw(st.sampled_from(ACTIONS)))
            .replace("{junk}", draw(st.sampled_from(("nothing", "tags", "-", "%ff", "a" * 250))))
            .replace("{page}", draw(st.sampled_from(("1", "0", "-1", "x", "99999999999999999999")))))


@st.composite
def requests(draw: Any, w: World, route: str, method: str) -> tuple[str, dict[str, Any]]:
    url = _fill(route, w, draw)
    headers: list[tuple[str, str]] = []
    accept = draw(st.sampled_from(ACCEPTS))
    if accept:
        headers.append(("Accept", accept))
    body = b""
    form = draw(st.sampled_from(("occi", "plain", "json", "raw", "none")))
    if form == "occi":
        headers += [("Content-Type", "text/occi"), *draw(occi_lines(w.server_id, w.image_id))]
    elif form == "plain":
        lines = draw(occi_lines(w.server_id, w.image_id))
        body = "\n".join(f"{k}: {v}" for k, v in lines).encode("utf-8", "surrogatepass")
        headers.append(("Content-Type", "text/plain"))
    elif form == "json":
        body = json.dumps(draw(json_bodies(w.server_id))).encode()
        headers.append(("Content-Type", draw(st.sampled_from(("application/occi+json", "application/json")))))
    elif form == "raw":
        body = draw(st.binary(max_size=64))
        headers.append(("Content-Type", draw(st.sampled_from(("text/plain", "application/occi+json", "text/uri-list",
                                                                 "application/octet-stream")))))
    if draw(st.booleans()):
        headers.append(("User-Agent", draw(st.sampled_from(("c OCCI/1.1", "c OCCI/1.2", "c OCCI/1.3", "OCCI/")))))
    # header values must be latin-1 on the wire: a hostile character there goes as UTF-8 bytes
    raw_headers = [(k.encode(), v.encode("utf-8", "surrogatepass")) for k, v in headers]
    return url, {"headers": raw_headers, "content": body}


def _check(resp: httpx.Response, where: str, newer: bool) -> None:
    assert resp.status_code < 500 or (resp.status_code == 501 and newer), where
    assert "OCCI/1.2" in resp.headers.get("server", ""), where
    if resp.status_code >= 400:
        ctype = resp.headers.get("content-type", "")
        if ctype.startswith("application/occi+json"):
            err = resp.json()["error"]
            assert err["code"] == resp.status_code and err["message"], where
        else:
            assert ctype.startswith(("text/plain", "text/occi")) and resp.text.strip(), where


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async for w in start_world(tmp_path_factory.mktemp("fuzz-occi")):
        yield w


CASES = [(route, method) for route in ROUTES for method in ("GET", "POST", "PUT", "DELETE")
         if not (method == "DELETE" and route in ("/occi/{kind}/", "/occi/{kind}/?action={action}"))]


@pytest.mark.parametrize(("route", "method"), CASES, ids=[f"{m} {r}" for r, m in CASES])
@pytest.mark.parametrize("role", ["member", "reader"])  # anonymous callers: test_bad_input's token probes
@FUZZ
@given(data=st.data())
async def test_occi_never_fails_on_bad_input(world: World, route: str, method: str, role: str, data: Any) -> None:
    url, kwargs = data.draw(requests(world, route, method))
    where = f"[{role}] {method} {url} {kwargs['headers']} {kwargs['content'][:200]!r}"
    try:
        resp = await world.clients[role].request(method, url, **kwargs)
    except Exception as exc:  # the app crashed: a real server answers 500 and drops the connection
        raise AssertionError(f"app raised {exc!r}: {where}") from exc
    _check(resp, f"{where}\n-> {resp.status_code} {resp.text[:300]}",
           any(k.lower() == b"user-agent" and b"OCCI/1.3" in v for k, v in kwargs["headers"]))

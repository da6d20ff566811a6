"""The built-in products (PAAS.md 3.11): they work offline on the busybox demo image, with only
`busybox` applets (called as `busybox <applet>`: the image links few of them).

- `kv-backend 1.0`: `busybox httpd -p 8080` with a CGI `/cgi-bin/data` answering JSON (node name,
  address, hostname, a request counter kept in $PAAS_STATE, the client's address). Attribute
  `ALLOW_FROM` (`MEMBERS(web)`): configure writes one `A:<ip>` rule per member then `D:*` to its
  httpd.conf, so a web node that is not (yet) in the list gets 403.
- `httpd-web 1.0`: `busybox httpd -p 80 -h $PAAS_ROOT/httpd-web/www`. Attribute `BACKENDS`
  (`IPALL(backend)`): configure writes the addresses to $PAAS_ROOT/httpd-web/backends, which the
  application's CGI reads on each request. `open_ports` 80, `artifact_dir` www.
- The demo application (`demo_app_tarball()`, deterministic gzip of a tar): `index.html`,
  `cgi-bin/app` (the application page: `busybox wget`s every backend's /cgi-bin/data and shows it),
  `cgi-bin/burn?s=N` (a CPU burner `busybox timeout N sh -c 'while :; do :; done'` in the
  background with stdio closed; answers at once).

Recipes are the files under scripts/ (package data): each step's text is scripts/common.sh (the
httpd helpers) + scripts/<product>/<step>.sh. Steps: install, configure, start (start-or-reload:
SIGHUP, re-reading httpd.conf, when the server runs; what a reconfigure runs after configure), stop,
uninstall, and httpd-web's deploy (after an application landed). `ensure_builtin_products(db)` upserts the rows (project_id "", builtin) at engine start.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import random
import tarfile
import uuid
from importlib import resources
from typing import Any

import sqlalchemy as sa

from cumulo.db import Database, utcnow
from cumulo.paas.models import paas_products

STEPS = ("install", "configure", "start", "stop", "uninstall", "deploy")  # the catalogue's recipe steps
_NS = uuid.UUID("6f0c1c55-7a47-4d3e-9a2b-5c7e0c0a9a13")  # the built-in products' ids: uuid5(_NS, name-version)
_FIXED_MTIME = 1704067200  # 2024-01-01: the demo tarball is the same bytes on every build


def _text(*parts: str) -> str:
    return resources.files("cumulo.paas.products").joinpath(*parts).read_text()


def _recipes(product: str) -> dict[str, str]:
    base = resources.files("cumulo.paas.products").joinpath("scripts", product)
    common = _text("scripts", "common.sh")
    out: dict[str, str] = {}
    for step in STEPS:
        f = base.joinpath(f"{step}.sh")
        if f.is_file():
            out[step] = common + "\n" + f.read_text()
    return out


def _meta(**items: str) -> list[dict[str, str]]:
    return [{"key": k, "value": v, "description": ""} for k, v in items.items()]


def products() -> list[dict[str, Any]]:
    """The built-in product rows (without created_at)."""
    return [
        {
            "name": "kv-backend", "version": "1.0",
            "description": "A small backend service: busybox httpd on port 8080 with a JSON CGI "
                           "(/cgi-bin/data); only the members of ALLOW_FROM may query it.",
            "metadata": _meta(installator="shell"),
            "attributes": [{"key": "ALLOW_FROM", "value": "MEMBERS(web)", "type": "MEMBERS",
                            "description": "Addresses allowed to query the backend (others get 403)."}],
            "recipes": _recipes("kv-backend"),
        },
        {
            "name": "httpd-web", "version": "1.0",
            "description": "A web server: busybox httpd on port 80 serving $PAAS_ROOT/httpd-web/www; "
                           "applications are deployed into www.",
            "metadata": _meta(installator="shell", open_ports="80", artifact_dir="www"),
            "attributes": [{"key": "BACKENDS", "value": "IPALL(backend)", "type": "IPALL",
                            "description": "The backends' addresses (comma list) the application queries."}],
            "recipes": _recipes("httpd-web"),
        },
    ]


def product_id(name: str, version: str) -> str:
    return str(uuid.uuid5(_NS, f"{name}-{version}"))


async def ensure_builtin_products(db: Database) -> None:
    """Insert the built-in products, or bring their rows up to date (idempotent; engines may race)."""
    for row in products():
        values = {**row, "project_id": "", "builtin": True}
        try:
            async with db.write() as conn:
                q = sa.select(paas_products.c.id).where(
                    paas_products.c.project_id == "", paas_products.c.name == row["name"],
                    paas_products.c.version == row["version"])
                found = (await conn.execute(q)).scalar_one_or_none()
                if found is None:
                    await conn.execute(sa.insert(paas_products).values(
                        id=product_id(row["name"], row["version"]), created_at=utcnow(), **values))
                else:
                    await conn.execute(sa.update(paas_products).where(paas_products.c.id == found).values(**values))
        except sa.exc.IntegrityError:  # another engine inserted it meanwhile: its row is the same
            continue


# The package an install of a built-in product unpacks (PAAS.md 3.11: an install does what an
# install does; a template node skips it): incompressible assets and their SHA256SUMS, which the
# install recipe checks (busybox sha256sum -c) before moving the assets into the product's dir.
PAYLOAD_BYTES = {"httpd-web": 3 << 20, "kv-backend": 1 << 20}
_ASSET = 256 << 10  # bytes per asset file


@functools.lru_cache(maxsize=4)
def payload(name: str, version: str) -> bytes | None:
    """The built-in product's package (a .tar.gz, the same bytes every time), None if it has none.
    CPU work of a few tens of ms: call it in a thread."""
    size = PAYLOAD_BYTES.get(name)
    if size is None:
        return None
    rng = random.Random(f"{name}-{version}")  # noqa: S311 - deterministic filler, not a secret
    raw = io.BytesIO()
    sums = []
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        _add(tf, "assets/", 0o755)
        for i in range(size // _ASSET):
            blob = rng.randbytes(_ASSET)
            _add(tf, f"assets/asset-{i:03d}.bin", 0o644, blob)
            sums.append(f"{hashlib.sha256(blob).hexdigest()}  assets/asset-{i:03d}.bin\n")
        _add(tf, "SHA256SUMS", 0o644, "".join(sums).encode())
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=1) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _add(tf: tarfile.TarFile, name: str, mode: int, data: bytes | None = None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = _FIXED_MTIME, 0, 0, "root", "root", mode
    if data is None:
        info.type = tarfile.DIRTYPE
        tf.addfile(info)
    else:
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


def demo_app_tarball() -> bytes:
    """The demo application as a .tar.gz (the same bytes every time)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        _add(tf, "cgi-bin/", 0o755)
        _add(tf, "cgi-bin/app", 0o755, _text("app", "app.cgi").encode())
        _add(tf, "cgi-bin/burn", 0o755, _text("app", "burn.cgi").encode())
        _add(tf, "index.html", 0o644, _text("app", "index.html").encode())
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()

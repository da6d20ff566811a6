"""The inline artifact's checks (paas/artifacts.py), on hostile tarballs: nothing is extracted, and
nothing a tarball declares makes the check read (decompress into memory) more than the bound."""

from __future__ import annotations

import base64
import os
import tarfile
import zlib
from typing import Any

import pytest
from _asgi_ctx import temp_database
from paas_api_support import FakeEngine, client, data_url, mount, product, tarball, two_tier

from cumulo import errors
from cumulo.db import utcnow
from cumulo.paas import artifacts
from cumulo.paas.models import paas_applications, paas_env_instances


def _gzip_of(chunks: list[tuple[bytes, int]]) -> bytes:
    """A gzip stream of the concatenation (each chunk repeated `times`), without holding it whole."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [z.compress(chunk * times) for chunk, times in chunks]
    return b"".join(out) + z.flush()


def _header(name: str, kind: bytes, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def test_a_huge_pax_header_is_refused_before_it_is_read_whole() -> None:
    """A pax header member is read into memory whole by tarfile: its declared size (a gzip bomb of
    zeros, 256 MiB from ~250 KiB) must stop the check at the bound, not fill the API's memory."""
    huge = 256 << 20
    raw = _gzip_of([(_header("././@PaxHeader", tarfile.XHDTYPE, huge), 1), (b"\0" * (1 << 20), huge >> 20),
                    (_header("index.html", tarfile.REGTYPE, 2), 1), (b"hi".ljust(512, b"\0"), 1),
                    (b"\0" * 1024, 1)])
    assert len(raw) < 1 << 20  # fits the API's 1 MiB body
    with pytest.raises(errors.Invalid, match="unpacks to more than"):
        artifacts._check_tarball(raw)


def test_the_bounded_reader_never_gives_more_than_the_bound() -> None:
    raw = _gzip_of([(b"\0" * (1 << 20), 8)])
    reader = artifacts._Bounded(raw, 3 << 20)
    assert len(reader.read(1 << 20)) == 1 << 20
    with pytest.raises(errors.Invalid, match="unpacks to more than"):
        reader.read(8 << 20)
    with pytest.raises(errors.Invalid, match="unpacks to more than"):
        artifacts._Bounded(raw, 3 << 20).seek(5 << 20)


def test_a_plain_tarball_passes() -> None:
    import io

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"<h1>hi</h1>"
        info = tarfile.TarInfo("www/index.html")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    artifacts._check_tarball(buf.getvalue())
    assert base64.b64encode(buf.getvalue())


async def test_an_upload_the_engine_refuses_leaves_no_file(settings: Any) -> None:
    """POST applicationInstance on a busy instance: 409, and the stored upload is gone again (else
    refused uploads of new content would pile up until a sweep); the same upload once accepted stays."""
    async with temp_database(settings) as db:
        engine = FakeEngine(db)
        a = client(mount(db, settings, engine), "proj-a")
        try:
            for p in (product("web-app"), product("kv")):
                assert (await a.post("/paas/rest/catalog/productRelease", json=p)).status_code == 204
            assert (await a.post("/paas/rest/catalog/org/default/environment", json=two_tier())).status_code == 204
            inst = "/paas/rest/envInst/org/default/vdc/proj-a/environmentInstance"
            r = await a.post(inst, json={"blueprintName": "shop1", "environmentDto": {"name": "shop"}})
            assert r.status_code == 202, r.text  # its task RUNNING: the instance is busy
            body = {"applicationName": "site", "artifactsDto": [
                {"name": "s.tgz", "path": data_url(tarball({"index.html": b"<h1>hi</h1>"})),
                 "productReleaseDto": {"productName": "web-app"}}]}
            r = await a.post(f"{inst}/shop1/applicationInstance", json=body)
            assert r.status_code == 409, r.text
            folder = artifacts.artifact_dir(settings)
            assert not folder.exists() or sorted(os.listdir(folder)) == []
            await engine.finish_all()
            r = await a.post(f"{inst}/shop1/applicationInstance", json=body)
            assert r.status_code == 202, r.text
            assert len(os.listdir(folder)) == 1
        finally:
            await a.aclose()


async def test_discard_keeps_a_file_an_application_row_references(settings: Any) -> None:
    async with temp_database(settings) as db:
        art = await artifacts.store_inline(settings, data_url(tarball({"a": b"x"})))
        path = artifacts.artifact_path(settings, art["sha256"])
        async with db.write() as conn:
            await conn.execute(paas_env_instances.insert().values(
                id="inst-1", project_id="p", user_id="u", name="i", description="", environment_name="e",
                environment={}, status="INSTALLED", keep_on_failure=False, created_at=utcnow()))
            await conn.execute(paas_applications.insert().values(
                id="app-1", env_instance_id="inst-1", name="site", product="web-app", artifact=art,
                status="ARTEFACT_DEPLOYED"))
        assert not await artifacts.discard(settings, db, art["sha256"]) and path.exists()
        async with db.write() as conn:
            await conn.execute(paas_applications.delete())
        assert await artifacts.discard(settings, db, art["sha256"]) and not path.exists()
        assert not await artifacts.discard(settings, db, art["sha256"])  # gone already

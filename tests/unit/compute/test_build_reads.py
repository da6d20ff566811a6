"""What the agent's build reads (issue 14: the scaled boot's round trips): the image's formats and
properties come from the request_spec the API wrote (no image row or decorations read), an image
gone by then is read afresh as before, and on PostgreSQL a server without block device mappings
has none read (the take says so)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from workers_harness import FLAVOR_SMALL, running

from cumulo import errors
from cumulo.compute import states as st
from cumulo.compute import volume_records
from cumulo.compute.agent import build
from cumulo.compute.rpc import ConductorAPI
from cumulo.image.models import images as image_rows


def summary(image_id: str, **props: Any) -> dict[str, Any]:
    """compute.service.boot.image_summary's shape."""
    return {"id": image_id, "name": "img", "disk_format": "qcow2", "container_format": "bare", "min_ram": 0,
            "min_disk": 0, "size": 11, "properties": props}


def count_calls(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list[str]:
    calls: list[str] = []
    orig = getattr(obj, name)

    async def counted(image_id: str) -> Any:
        calls.append(image_id)
        return await orig(image_id)

    monkeypatch.setattr(obj, name, counted)
    return calls


async def test_build_takes_the_image_from_the_request_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path) as rig:
        image = rig.images.add()  # the row has no such property: the request_spec's image is what counts
        reads = count_calls(monkeypatch, rig.images, "get_internal")
        fetched = count_calls(monkeypatch, rig.images, "local_path")
        uuid = await rig.create(FLAVOR_SMALL, image_ref=image, request_spec={
            "flavor": FLAVOR_SMALL, "image": summary(image, cumulo_fake_fail="spawn")})
        row = await rig.wait_settled(uuid)
        assert row["vm_state"] == st.ERROR
        assert "cumulo_fake_fail=spawn" in (await rig.faults(uuid))[-1]["message"]
        assert reads == [] and fetched == [image]  # the bytes still come by the image's id

        ok = await rig.create(FLAVOR_SMALL, image_ref=image, request_spec={"flavor": FLAVOR_SMALL, "image": summary(image)})
        assert (await rig.wait_settled(ok))["vm_state"] == st.ACTIVE
        assert reads == [] and fetched == [image, image]


async def test_an_image_gone_before_the_build_is_read_afresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path) as rig:
        image = rig.images.add()
        del rig.images.images[image]  # deleted after the create

        async def gone(image_id: str) -> str:
            raise errors.NotFound(f"No image found with ID {image_id}")

        monkeypatch.setattr(rig.images, "local_path", gone)
        reads = count_calls(monkeypatch, rig.images, "get_internal")
        uuid = await rig.create(FLAVOR_SMALL, image_ref=image, request_spec={"flavor": FLAVOR_SMALL, "image": summary(image)})
        row = await rig.wait_settled(uuid)
        # as without the request_spec's image: read afresh, no image (the fake driver builds without one)
        assert row["vm_state"] == st.ACTIVE and reads == [image]
        assert (await rig.driver().list_instances())[0].uuid == uuid


async def test_a_request_spec_without_the_image_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path) as rig:
        image = rig.images.add(cumulo_fake_fail="spawn")
        reads = count_calls(monkeypatch, rig.images, "get_internal")
        uuid = await rig.create(FLAVOR_SMALL, image_ref=image)  # an older API's request_spec: no image
        assert (await rig.wait_settled(uuid))["vm_state"] == st.ERROR
        assert reads == [image]


async def test_block_device_mappings_are_read_only_when_the_server_has_some(tmp_path: Path) -> None:
    async with running(tmp_path) as rig:
        selects: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_a: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "FROM block_device_mapping" in statement:
                selects.append(statement)

        sa.event.listen(rig.db.engine.sync_engine, "before_cursor_execute", seen)
        try:
            plain = await rig.create(FLAVOR_SMALL)
            assert (await rig.wait_settled(plain))["vm_state"] == st.ACTIVE
            without = len(selects)
            uuid = await rig.insert_instance({**FLAVOR_SMALL, "ephemeral_gb": 2})
            async with rig.db.write() as conn:
                await volume_records.insert(conn, instance_uuid=uuid, source_type="blank", destination_type="local",
                                            boot_index=-1, volume_size=1, device_name="/dev/vdb",
                                            delete_on_termination=True)
            before = len(selects)
            await ConductorAPI(rig.bus).build_instances([uuid])
            assert (await rig.wait_settled(uuid))["vm_state"] == st.ACTIVE
        finally:
            sa.event.remove(rig.db.engine.sync_engine, "before_cursor_execute", seen)
        assert rig.driver()._instances[uuid]["flavor"]["ephemeral_gb"] == 1  # the mapping's size
        if rig.db.is_sqlite:
            assert without == 1  # SQLite reads them (a library call)
        else:
            assert without == 0 and len(selects) - before == 1
            # one statement object per node and shape, compiled once (SQLAlchemy's cache)
            assert build._take_statement.cache_info().currsize >= 1


async def test_the_take_hands_the_image_row_to_a_backend_that_keeps_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(tmp_path) as rig:
        if rig.db.is_sqlite:
            pytest.skip("PostgreSQL's take statement (SQLite reads the image: a library call)")
        image, gone = rig.images.add(), rig.images.add()
        async with rig.db.write() as conn:
            for image_id, deleted in ((image, False), (gone, True)):
                await conn.execute(sa.insert(image_rows).values(
                    id=image_id, name="img", status="deleted" if deleted else "active", visibility="public",
                    disk_format="raw", container_format="bare", store_key="k" * 64, deleted=deleted))
        kept: list[dict[str, Any]] = []
        monkeypatch.setattr(rig.images, "remember_row", kept.append, raising=False)
        uuid = await rig.create(FLAVOR_SMALL, image_ref=image, request_spec={"flavor": FLAVOR_SMALL, "image": summary(image)})
        assert (await rig.wait_settled(uuid))["vm_state"] == st.ACTIVE
        assert [(r["id"], r["status"], r["store_key"]) for r in kept] == [(image, "active", "k" * 64)]
        other = await rig.create(FLAVOR_SMALL, image_ref=gone, request_spec={"flavor": FLAVOR_SMALL, "image": summary(gone)})
        assert (await rig.wait_settled(other))["vm_state"] == st.ACTIVE
        assert len(kept) == 1  # a deleted image's row is not handed over: the backend reads it itself


async def test_the_delete_reads_mappings_and_migrations_only_when_there_are_some(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running(tmp_path) as rig:
        uuid = await rig.create(FLAVOR_SMALL)
        await rig.wait_settled(uuid)
        selects: list[str] = []

        def seen(_conn: Any, _cursor: Any, statement: str, *_a: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and (
                    "FROM block_device_mapping" in statement or "FROM migrations" in statement):
                selects.append(statement)

        sa.event.listen(rig.db.engine.sync_engine, "before_cursor_execute", seen)
        try:
            await rig.act_delete(uuid)
            row = await rig.wait(uuid, lambda r: r["deleted"])
        finally:
            sa.event.remove(rig.db.engine.sync_engine, "before_cursor_execute", seen)
        assert row["vm_state"] == st.DELETED and await rig.placement_usage() == {}
        events = {e["event"]: e for e in await rig.events(uuid, "delete")}
        assert events["compute_terminate_instance"]["result"] == "Success"
        assert events["compute_terminate_instance"]["finish_time"] is not None
        assert len(selects) == (2 if rig.db.is_sqlite else 0)

        # a destroy that fails: ERROR with a fault, the event an Error (one transaction on PostgreSQL)
        other = await rig.create(FLAVOR_SMALL)
        await rig.wait_settled(other)

        async def broken(_uuid: str) -> None:
            raise RuntimeError("destroy refused")

        monkeypatch.setattr(rig.driver(), "destroy", broken)
        await rig.act_delete(other)
        row = await rig.wait(other, lambda r: r["vm_state"] == st.ERROR)
        assert not row["deleted"] and "destroy refused" in (await rig.faults(other))[-1]["message"]
        events = {e["event"]: e for e in await rig.events(other, "delete")}
        assert events["compute_terminate_instance"]["result"] == "Error"
        assert "destroy refused" in events["compute_terminate_instance"]["traceback"]

"""The data path of images: upload, the check of container images, activation and download.

Uploads are streamed by the API, or a local file for snapshots and the demo images. At start,
`bootstrap` reconciles the store after a crash.

Bytes go queued → saving → active (or `uploading` for a staged import). A docker/OCI upload is
checked as an image archive before it is activated (`cumulo.oci`); a bad one ends killed with the
reason in its `cumulo_error` property. Every other upload passes the format inspector
(`inspector`: the data matches its disk_format, a qcow2 names no backing or data file), as
Glance does: on the head as it streams in (a refusal stores nothing more and drains the body),
then on the writer's head at the end; a refusal is Glance's 415, the image back to queued and its
bytes removed. Placing bytes and pointing a row at them happen under `_refs` (see `records`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa

from cumulo import errors
from cumulo.context import RequestContext
from cumulo.db import utcnow
from cumulo.image._schemas import HASH_ALGO
from cumulo.image.inspector import INSPECT_BYTES, BadImageData, Verdict, inspect
from cumulo.image.models import image_properties, image_tasks, images
from cumulo.image.records import ImageRecords, not_found
from cumulo.image.store import Digest, StoreUpload
from cumulo.oci.unpack import check_image, remove_stale_unpacks

LOG = logging.getLogger(__name__)

CONTAINER_IMAGE_FORMATS = ("docker", "oci")  # container formats whose bytes are checked at upload
ERROR_PROPERTY = "cumulo_error"  # why an image was killed


class Gone(errors.CumuloError):
    """The image went away while its data was being stored (Glance answers 410)."""

    code = 410


def _head_of(path: str) -> bytes:
    """The first INSPECT_BYTES of a local file (a snapshot or a volume export of ours). Blocking."""
    with open(path, "rb") as fh:
        return fh.read(INSPECT_BYTES)


class ImageData(ImageRecords):
    """Image bytes in and out: upload, check, activate, download."""

    # ---- lifecycle -------------------------------------------------------------------------

    async def bootstrap(self, *, reconcile: bool = True) -> None:
        """Make the store, and reconcile after a crash: uploads cut short go back to queued,
        their temp files, half-done unpacks and any bytes (or unpacked roots) no live image
        references are removed. (The demo images are seeded after this: cumulo.image.demo.)
        `reconcile` False: only the store's dirs (an API process of a split cloud that starts
        while another one runs: that one's uploads are not cut short)."""
        await self.store.ensure_dirs()
        if not reconcile:
            return
        await self.store.sweep_tmp()
        stale = await asyncio.to_thread(remove_stale_unpacks, self.store.root)
        if stale:
            LOG.info("image store: removed %d interrupted unpacks", len(stale))
        async with self.db.write() as conn:
            await conn.execute(
                sa.update(images)
                .where(images.c.status == "saving", images.c.deleted.is_(False))
                .values(status="queued", updated_at=utcnow())
            )
            # An import cut short keeps its staged bytes: back to uploading, so it can be imported again.
            await conn.execute(
                sa.update(images)
                .where(images.c.status == "importing", images.c.deleted.is_(False))
                .values(status="uploading", updated_at=utcnow())
            )
            await conn.execute(
                sa.update(image_tasks)
                .where(image_tasks.c.status.in_(("pending", "processing")))
                .values(status="failure", message="The cloud restarted during the import.", updated_at=utcnow())
            )
        async with self._refs:
            async with self.db.read() as conn:
                keys = await self._live_keys(conn)
            removed = await self.store.remove_unreferenced(keys)
        if removed:
            LOG.info("image store: removed %d unreferenced blobs", len(removed))

    # ---- data ------------------------------------------------------------------------------

    async def upload_from_path(self, image_id: str, path: str) -> None:
        """Copy a local file into the store as the image's data: queued → saving → active."""
        async with self.db.write() as conn:
            row = await self._row(conn, image_id)
            if row is None:
                raise not_found(image_id)
            if row["status"] not in ("queued", "saving"):
                raise errors.InvalidState(f"Image {image_id} is {row['status']}; cannot store data")
            await self.set_status(conn, image_id, ("queued", "saving"), "saving")
        try:
            # The head first: a refused file (a volume's raw upload, say) is not copied and hashed.
            verdict = await self._inspect(await asyncio.to_thread(_head_of, path), 0, row)
            if verdict is not None and verdict.problem:
                LOG.info("image %s: upload refused: %s", image_id, verdict.problem)
                raise BadImageData(verdict.problem)
            writer, digest = await self.store.import_file(path, self.size_cap)
        except BaseException:
            await self._restore_queued(image_id)
            raise
        await self._activate(image_id, writer, digest, row)

    async def _restore_queued(self, image_id: str) -> None:
        async with self.db.write() as conn:
            await self.set_status(conn, image_id, ("saving",), "queued")

    async def upload(
        self, ctx: RequestContext, image_id: str, chunks: AsyncIterator[bytes], expected_size: int | None,
        final: str = "active",
    ) -> None:
        """PUT /file: stream `chunks` into the store; queued → saving → active. PUT /stage ends in
        `final="uploading"` instead (the bytes wait for POST /import, see image/imports.py)."""
        if expected_size is not None and expected_size > self.size_cap:
            raise errors.PayloadTooLarge(f"The incoming image is too large: it exceeds {self.size_cap} bytes.")
        async with self.db.write() as conn:
            row = await self.load_owned(conn, ctx, image_id, "upload_image")
            if not (row["disk_format"] and row["container_format"]):
                raise errors.Invalid("Properties disk_format, container_format must be set prior to saving data.")
            if not await self.set_status(conn, image_id, ("queued",), "saving"):
                raise errors.Conflict(f"Image status transition from {row['status']} to saving is not allowed")
        writer: StoreUpload | None = None
        try:
            writer = await self.store.open_writer(self.size_cap)
            head: bytearray | None = bytearray()  # None once inspected
            async for chunk in chunks:
                await writer.write(chunk)
                if head is not None:
                    head += chunk[: INSPECT_BYTES - len(head)]
                    if len(head) >= INSPECT_BYTES:
                        # The head is complete: inspect it now, so a refused upload stores no more.
                        verdict = await self._inspect(bytes(head), 0, row)
                        head = None
                        if verdict is not None and verdict.problem:
                            await self._refuse(image_id, writer, verdict.problem, chunks)
            digest = await writer.finish()
            if expected_size is not None and digest.size != expected_size:
                raise errors.Invalid(
                    f"Image size mismatch: the request said {expected_size} bytes, {digest.size} were sent."
                )
        except BaseException:
            if writer is not None:
                await writer.abort()
            await self._restore_queued(image_id)
            raise
        await self._activate(image_id, writer, digest, row, final)

    async def _inspect(self, head: bytes, size: int, row: dict[str, Any]) -> Verdict | None:
        """The format inspector's verdict on an upload's head (None for docker/OCI archives, checked
        as archives). Mid-stream `size` is 0: only the refusal counts, `_activate` inspects again."""
        if row["container_format"] in CONTAINER_IMAGE_FORMATS:
            return None
        return await asyncio.to_thread(inspect, head, size, row["disk_format"], row["container_format"])

    async def _refuse(
        self, image_id: str, writer: StoreUpload, problem: str, rest: AsyncIterator[bytes] | None = None
    ) -> None:
        """Refuse an upload as Glance does (InvalidImageData: 415, the image back to queued): the
        bytes stored so far are removed, the rest of a streamed body is read and dropped (so the
        client gets the answer rather than a reset connection)."""
        await writer.abort()
        await self._restore_queued(image_id)
        if rest is not None:
            async for _ in rest:
                pass
        LOG.info("image %s: upload refused: %s", image_id, problem)
        raise BadImageData(problem)

    async def _check_container(self, image_id: str, writer: StoreUpload, container_format: str | None) -> None:
        """A docker/OCI upload must be a readable image archive: otherwise the image is killed
        (the reason in its `cumulo_error` property), the bytes dropped, and Invalid raised."""
        if container_format not in CONTAINER_IMAGE_FORMATS:
            return
        try:
            await asyncio.to_thread(check_image, writer.path)
            return
        except errors.Invalid as exc:
            reason = str(exc.args[0] if exc.args else exc)
        except BaseException:
            await writer.abort()
            await self._restore_queued(image_id)
            raise
        await writer.abort()
        message = f"Image {image_id} is not a valid {container_format} image: {reason}"
        async with self.db.write() as conn:
            if await self.set_status(conn, image_id, ("saving",), "killed"):
                await conn.execute(
                    sa.delete(image_properties).where(
                        image_properties.c.image_id == image_id, image_properties.c.name == ERROR_PROPERTY
                    )
                )
                await conn.execute(
                    sa.insert(image_properties).values(image_id=image_id, name=ERROR_PROPERTY, value=reason[:65535])
                )
        LOG.info("%s", message)
        raise errors.Invalid(message)

    async def _activate(
        self, image_id: str, writer: StoreUpload, digest: Digest, row: dict[str, Any], final: str = "active"
    ) -> None:
        await self._check_container(image_id, writer, row["container_format"])
        try:  # the writer kept the head: no file is read again
            verdict = await self._inspect(digest.head, digest.size, row)
        except BaseException:
            await writer.abort()
            await self._restore_queued(image_id)
            raise
        if verdict is not None and verdict.problem:
            await self._refuse(image_id, writer, verdict.problem)
        virtual_size = verdict.virtual_size if verdict is not None else None
        async with self._refs:
            try:
                await self.store.commit(writer, digest)
            except BaseException:
                await writer.abort()
                await self._restore_queued(image_id)
                raise
            async with self.db.write() as conn:
                done = await self.set_status(
                    conn, image_id, ("saving",), final,
                    size=digest.size, virtual_size=virtual_size, checksum=digest.md5,
                    os_hash_algo=HASH_ALGO, os_hash_value=digest.sha512, store_key=digest.sha256,
                )
            if not done:
                await self._release(digest.sha256)
                raise Gone(
                    f"Image {image_id} could not be found after upload. The image may have been deleted "
                    "during the upload, cleaning up the chunks uploaded."
                )

    async def download(self, ctx: RequestContext, image_id: str) -> tuple[dict[str, Any], str | None]:
        """The row of an image ctx may download and its content key (None when it has no data)."""
        async with self.db.read() as conn:
            row = await self.load(conn, ctx, image_id)
        if row["status"] == "deactivated" and not ctx.is_admin:
            raise errors.Forbidden("The requested image has been deactivated. Image data download is forbidden.")
        if row["status"] not in ("active", "deactivated"):  # staged bytes are not the image's data yet
            return row, None
        if row["store_key"] is None or not await self.store.exists(row["store_key"]):
            return row, None
        return row, row["store_key"]


"""The inline artifact's checks (paas/artifacts.py), on hostile tarballs: nothing is extracted, and
nothing a tarball declares makes the check read (decompress into memory) more than the bound."""

from __future__ import annotations

import base64
import tarfile
import zlib

import pytest

from cumulo import errors
from cumulo.paas import artifacts


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

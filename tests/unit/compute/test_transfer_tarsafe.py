"""The tar rules of the transfer endpoint (compute.transfer.tarsafe): an overlay upper dir survives
the round trip (whiteouts, opaque dirs, owners, symlinks, hard links, the sticky bit) and every
hostile member is refused before a byte is written, with nothing written outside."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from cumulo.compute.transfer import tarsafe

ROOT = os.geteuid() == 0


def _tar(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    path = tmp_path / "in.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o644 if kind != tarfile.DIRTYPE else 0o755
    for k, v in kw.items():
        setattr(info, k, v)
    return info


@pytest.mark.skipif(not ROOT, reason="whiteouts (mknod), owners and trusted.* xattrs need root")
def test_round_trip_of_an_upper_dir(tmp_path: Path) -> None:
    src = tmp_path / "upper"
    (src / "etc").mkdir(parents=True)
    os.chmod(src, 0o755)  # the container's "/": others must traverse it
    os.chown(src, 0, 100)
    (src / "etc" / "motd").write_text("hello")
    os.chown(src / "etc" / "motd", 1234, 5678)
    (src / "tmp").mkdir(mode=0o1777)
    os.chmod(src / "tmp", 0o1777)
    (src / "bin").mkdir()
    (src / "bin" / "tool").write_bytes(b"x")
    os.chmod(src / "bin" / "tool", 0o4755)  # setuid: dropped on the way in
    os.link(src / "etc" / "motd", src / "etc" / "motd.hard")
    os.symlink("/bin/busybox", src / "bin" / "sh")  # the container's own root: kept
    os.symlink("../etc/motd", src / "bin" / "motd")
    os.mknod(src / "etc" / "deleted", stat.S_IFCHR | 0o600, os.makedev(0, 0))  # a whiteout
    (src / "var").mkdir()
    os.setxattr(src / "var", tarsafe.OPAQUE_XATTR, b"y")
    sparse = src / "big"
    with open(sparse, "wb") as fh:
        fh.truncate(8 << 20)
    spool = tmp_path / "t.tar"
    with open(spool, "wb") as out:
        tarsafe.build(src, out)
    dest = tmp_path / "dest"
    n = tarsafe.extract(spool, dest, 1000, 1 << 30)
    assert n == 12  # the root "." and 11 members
    assert stat.S_IMODE(os.lstat(dest).st_mode) == 0o755 and os.lstat(dest).st_gid == 100
    assert (dest / "etc" / "motd").read_text() == "hello"
    st = os.lstat(dest / "etc" / "motd")
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_ino == os.lstat(dest / "etc" / "motd.hard").st_ino
    assert stat.S_IMODE(os.lstat(dest / "tmp").st_mode) == 0o1777
    assert stat.S_IMODE(os.lstat(dest / "bin" / "tool").st_mode) == 0o755
    assert os.readlink(dest / "bin" / "sh") == "/bin/busybox"
    assert os.readlink(dest / "bin" / "motd") == "../etc/motd"
    wh = os.lstat(dest / "etc" / "deleted")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == os.makedev(0, 0)
    assert os.getxattr(dest / "var", tarsafe.OPAQUE_XATTR) == b"y"
    assert os.path.getsize(dest / "big") == 8 << 20


@pytest.mark.parametrize(
    ("members", "why"),
    [
        ([(_info("/etc/passwd"), b"x")], "absolute"),
        ([(_info("a/../../x"), b"x")], "'..'"),
        ([(_info("../x"), b"x")], "'..'"),
        ([(_info("dev", tarfile.CHRTYPE, devmajor=1, devminor=3), None)], "device node"),
        ([(_info("disk", tarfile.BLKTYPE, devmajor=8, devminor=0), None)], "device node"),
        ([(_info("fifo", tarfile.FIFOTYPE), None)], "FIFO"),
        ([(_info("out", tarfile.SYMTYPE, linkname="/etc"), None), (_info("out/passwd"), b"x")], "below the symlink"),
        ([(_info("in", tarfile.SYMTYPE, linkname="."), None), (_info("in/x"), b"x")], "below the symlink"),
        ([(_info("up", tarfile.SYMTYPE, linkname="../../.."), None)], "out of the tree"),
        ([(_info("a/up", tarfile.SYMTYPE, linkname="../../x"), None)], "out of the tree"),
        ([(_info("h", tarfile.LNKTYPE, linkname="/etc/shadow"), None)], "absolute"),
        ([(_info("h", tarfile.LNKTYPE, linkname="nothing"), None)], "not an earlier file"),
        ([(_info("l", tarfile.SYMTYPE, linkname="/etc/shadow"), None), (_info("h", tarfile.LNKTYPE, linkname="l"), None)],
         "not an earlier file"),
        ([(_info("l", tarfile.SYMTYPE, linkname="/etc/shadow"), None), (_info("l"), b"over the link")], "twice"),
        ([(_info("f"), b"x"), (_info("f/g"), b"y")], "not a directory"),
        ([(_info("d/x"), b"x"), (_info("d", tarfile.SYMTYPE, linkname="/etc"), None)], "after members below it"),
        ([(_info("d/x"), b"x"), (_info("d"), b"a file over the dir")], "after members below it"),
        ([(_info("x"), b"x"), (_info(".", tarfile.DIRTYPE), None)], "'.' must be the first"),
        ([(_info(".", tarfile.SYMTYPE, linkname="/"), None)], "'.' must be the first"),
    ],
)
def test_hostile_members_are_refused_before_any_write(
    tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], why: str
) -> None:
    spool = _tar(tmp_path, members)
    dest = tmp_path / "dest"
    with pytest.raises(tarsafe.TarRefused, match=why):
        tarsafe.extract(spool, dest, 1000, 1 << 20)
    assert not dest.exists()  # checked before anything is made


def test_bounds(tmp_path: Path) -> None:
    spool = _tar(tmp_path, [(_info(f"f{i}"), b"0123456789") for i in range(5)])
    with pytest.raises(tarsafe.TarRefused, match="more than 4 entries") as exc:
        tarsafe.check(spool, 4, 1 << 20)
    assert exc.value.too_large
    with pytest.raises(tarsafe.TarRefused, match="exceed 45 bytes"):
        tarsafe.check(spool, 100, 45)
    assert len(tarsafe.check(spool, 5, 50)) == 5


def test_a_dir_member_after_its_contents_is_fine(tmp_path: Path) -> None:
    spool = _tar(tmp_path, [(_info("d/x"), b"x"), (_info("d", tarfile.DIRTYPE, mode=0o750), None)])
    dest = tmp_path / "dest"
    tarsafe.extract(spool, dest, 10, 1 << 20)
    assert (dest / "d" / "x").read_bytes() == b"x"
    assert stat.S_IMODE(os.lstat(dest / "d").st_mode) == 0o750


def test_setuid_and_setgid_bits_are_dropped(tmp_path: Path) -> None:
    spool = _tar(tmp_path, [(_info("suid", mode=0o6755), b"x"), (_info("d", tarfile.DIRTYPE, mode=0o3775), None)])
    dest = tmp_path / "dest"
    tarsafe.extract(spool, dest, 10, 1 << 20)
    assert stat.S_IMODE(os.lstat(dest / "suid").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(dest / "d").st_mode) == 0o1775  # the sticky bit stays


def test_build_never_follows_what_the_tenant_swaps_in_while_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upper dir is the tenant's: a file listed as regular and swapped for a symlink (or a FIFO)
    before it is read goes as a symlink (or not at all), never as the host file it points to, and
    a FIFO never blocks the build."""
    secret = tmp_path / "host-secret"
    secret.write_text("HOST ONLY")
    src = tmp_path / "upper"
    (src / "sub").mkdir(parents=True)
    (src / "data").write_text("tenant data")
    (src / "pipe").write_text("becomes a FIFO")
    (src / "sub" / "f").write_text("in sub")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("HOST ONLY too")
    real_fwalk = os.fwalk

    def racing(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        for entry in real_fwalk(*args, **kwargs):  # type: ignore[call-overload]
            if entry[0] == str(src):  # listed: now swap under the builder
                (src / "data").unlink()
                os.symlink(secret, src / "data")
                (src / "pipe").unlink()
                os.mkfifo(src / "pipe")
                (src / "sub").rename(tmp_path / "sub-gone")
                os.symlink(outside, src / "sub")
            yield entry

    monkeypatch.setattr(tarsafe.os, "fwalk", racing)
    spool = tmp_path / "t.tar"
    with open(spool, "wb") as out:
        tarsafe.build(src, out)
    raw = spool.read_bytes()
    assert b"HOST ONLY" not in raw
    with tarfile.open(spool) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["data"].issym() and members["data"].linkname == str(secret)
    assert "pipe" not in members
    assert members["sub"].issym() and "sub/f" not in members


@pytest.mark.skipif(not ROOT, reason="mknod of a device node needs root")
def test_build_leaves_out_device_nodes_and_fifos_but_keeps_whiteouts(tmp_path: Path) -> None:
    src = tmp_path / "upper"
    src.mkdir()
    os.mknod(src / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(src / "disk", stat.S_IFBLK | 0o600, os.makedev(7, 0))
    os.mkfifo(src / "fifo")
    os.mknod(src / "gone", stat.S_IFCHR | 0o600, os.makedev(0, 0))
    spool = tmp_path / "t.tar"
    with open(spool, "wb") as out:
        tarsafe.build(src, out)
    dest = tmp_path / "dest"
    tarsafe.extract(spool, dest, 100, 1 << 20)  # the destination accepts what the source sends
    assert sorted(os.listdir(dest)) == ["gone"]

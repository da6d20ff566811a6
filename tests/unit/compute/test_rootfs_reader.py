"""Files read from an untrusted root (an image, a container's merged root) stay inside it, are regular
files of bounded size, and never block: both the openat2 path and the fallback walk."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cumulo.compute.drivers import rootfs
from cumulo.compute.drivers.runc import bundle
from cumulo.errors import DriverError
from cumulo.oci import ImageConfig

both = pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "walk"])


def finishes(fn: Callable[[], Any], fifo: Path | None = None, timeout: float = 10.0) -> Any:
    """Run fn in a thread; fail (instead of hanging the test run) when it blocks."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001  # handed back to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        # Unblock it (a reader stuck in open() of a FIFO needs a writer), then fail.
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        raise AssertionError(f"{fn!r} blocked for {timeout}s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def make_root(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "shadow").write_text("app:x:4242:4343::/home/app:/bin/sh\n")
    return root


@both
def test_regular_file_is_read(tmp_path: Path, use_openat2: bool) -> None:
    root = make_root(tmp_path)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    assert rootfs.read_file(root, "etc/passwd", use_openat2=use_openat2) == b"root:x:0:0::/root:/bin/sh\n"
    assert rootfs.read_file(root, "/etc/passwd", use_openat2=use_openat2).startswith(b"root:")


@both
@pytest.mark.parametrize("target", ["/etc/shadow", "../../../../../../etc/shadow", "../shadow-dir/../etc/shadow"])
def test_symlinks_resolve_inside_the_root_never_on_the_host(tmp_path: Path, use_openat2: bool, target: str) -> None:
    root = make_root(tmp_path)
    (root / "etc" / "passwd").symlink_to(target)
    (root / "shadow-dir").mkdir()
    data = rootfs.read_file(root, "etc/passwd", use_openat2=use_openat2)
    assert data == (root / "etc" / "shadow").read_bytes()  # the image's file, not the host's /etc/shadow


@both
def test_a_symlinked_directory_is_followed_inside_the_root(tmp_path: Path, use_openat2: bool) -> None:
    root = tmp_path / "root"
    (root / "real-etc").mkdir(parents=True)
    (root / "real-etc" / "passwd").write_text("inside\n")
    (root / "etc").symlink_to("/real-etc")
    assert rootfs.read_file(root, "etc/passwd", use_openat2=use_openat2) == b"inside\n"
    # A link to the host's /etc by absolute path lands on the root's own (missing) /etc/hostname.
    (root / "hostetc").symlink_to("/etc")
    with pytest.raises(FileNotFoundError):
        rootfs.read_file(root, "hostetc/hostname", use_openat2=use_openat2)


@both
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, use_openat2: bool) -> None:
    root = make_root(tmp_path)
    os.mkfifo(root / "etc" / "passwd")
    with pytest.raises(rootfs.UnsafeFile, match="FIFO"):
        finishes(lambda: rootfs.read_file(root, "etc/passwd", use_openat2=use_openat2), root / "etc" / "passwd")
    # Also through a link to it.
    (root / "etc" / "group").symlink_to("passwd")
    with pytest.raises(rootfs.UnsafeFile, match="FIFO"):
        finishes(lambda: rootfs.read_file(root, "etc/group", use_openat2=use_openat2), root / "etc" / "passwd")


@both
def test_directories_devices_loops_and_big_files_are_refused(tmp_path: Path, use_openat2: bool) -> None:
    root = make_root(tmp_path)
    with pytest.raises(rootfs.UnsafeFile, match="directory"):
        rootfs.read_file(root, "etc", use_openat2=use_openat2)
    (root / "loop").symlink_to("loop")
    with pytest.raises(OSError):
        rootfs.read_file(root, "loop", use_openat2=use_openat2)
    (root / "big").write_bytes(b"x" * 5000)
    with pytest.raises(rootfs.UnsafeFile, match="larger than 4096"):
        rootfs.read_file(root, "big", max_bytes=4096, use_openat2=use_openat2)
    (root / "null").symlink_to("/dev/null")  # inside the root: no such file
    with pytest.raises(FileNotFoundError):
        rootfs.read_file(root, "null", use_openat2=use_openat2)


def test_a_root_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root-link").symlink_to("/")
    with pytest.raises(OSError):
        rootfs.read_file(tmp_path / "root-link", "etc/passwd")


# -- the image user (runc's config.json process.user) -------------------------------------------


def test_image_user_from_a_passwd_that_links_to_shadow_stays_in_the_image(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "etc" / "passwd").symlink_to("/etc/shadow")
    assert bundle.resolve_user(ImageConfig(user="app"), root) == {"uid": 4242, "gid": 4343}


def test_image_user_with_a_fifo_passwd_fails_clearly_without_blocking(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    os.mkfifo(root / "etc" / "passwd")
    with pytest.raises(DriverError, match=r"/etc/passwd is a FIFO"):
        finishes(lambda: bundle.resolve_user(ImageConfig(user="app"), root), root / "etc" / "passwd")


def test_image_user_and_group_names(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nstaff:x:50:app\n")
    assert bundle.resolve_user(ImageConfig(user="app"), root) == {"uid": 1000, "gid": 1000}
    assert bundle.resolve_user(ImageConfig(user="app:staff"), root) == {"uid": 1000, "gid": 50}
    assert bundle.resolve_user(ImageConfig(user="1000:staff"), root) == {"uid": 1000, "gid": 50}
    assert bundle.resolve_user(ImageConfig(user="7:8"), root) == {"uid": 7, "gid": 8}
    with pytest.raises(DriverError, match="not in the image's /etc/group"):
        bundle.resolve_user(ImageConfig(user="app:nogroup"), root)
    with pytest.raises(DriverError, match="not in the image's /etc/passwd"):
        bundle.resolve_user(ImageConfig(user="nobody-here"), root)

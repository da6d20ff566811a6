"""What `cumulo up` and the split processes' commands share."""

from __future__ import annotations

import argparse
from typing import Any

# Everything the cloud and its helpers (qemu-img, runc, SQLite) create is private to its user.
CLOUD_UMASK = 0o077


def _driver_list(text: str) -> str:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in ("auto", "runc", "qemu", "fake")]
    if not names or bad or ("auto" in names and len(names) > 1):
        raise argparse.ArgumentTypeError(
            f"invalid driver list {text!r}: use auto, or a comma list of runc, qemu and fake (e.g. runc,qemu)"
        )
    return ",".join(names)


def _loop_factory(local_driver: str) -> Any:
    """uvloop for a cloud of fake hosts (about 6% more creates/s); the stdlib loop once a real
    driver runs host commands: libuv starts a child with fork(), copying the page tables of the
    whole cloud (4-7 ms per command, with the loop blocked), where CPython uses vfork(). Measured
    in benchmarks/README.md: a runc boot runs five commands and gets 20 ms faster."""
    if local_driver.split(",") != ["fake"]:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop

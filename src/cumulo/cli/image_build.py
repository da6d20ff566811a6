"""`cumulo image build busybox|tiny-vm`: the demo images built offline into files.

The builders live in `cumulo.image.demo`; tiny-vm's output: image_build_vm."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cumulo.image.demo.busybox import REPO_TAG, BusyboxMissing, build_busybox

DEFAULT_OUTPUT = Path("busybox.tar")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]  # argparse's private generic
    image = sub.add_parser("image", help="container image tools")
    image_sub = image.add_subparsers(dest="image_command", required=True)
    build = image_sub.add_parser("build", help="build a demo image offline")
    build.add_argument("name", choices=["busybox", "tiny-vm"], help="which image to build")
    build.add_argument("--output", "-o", type=Path, default=None,
                       help="where to write it (busybox: busybox.tar; tiny-vm: a directory, ./tiny-vm)")
    build.add_argument("--cache-dir", type=Path, default=None,
                       help="tiny-vm: where the kernel .deb is cached (./tiny-vm-cache); a cached kernel builds offline")


def run(args: argparse.Namespace) -> int:
    if args.name == "tiny-vm":
        from cumulo.cli.image_build_vm import run_tiny_vm

        return run_tiny_vm(args.output or Path("tiny-vm"), args.cache_dir or Path("tiny-vm-cache"))
    args.output = args.output or DEFAULT_OUTPUT
    try:
        out = build_busybox(args.output)
    except BusyboxMissing as exc:
        print(f"cumulo image build: {exc}", file=sys.stderr)
        return 1
    print(f"{out} ({out.stat().st_size} bytes, docker save format, tag {REPO_TAG})")
    print(f"  openstack image create --container-format docker --disk-format raw --file {out} busybox")
    return 0

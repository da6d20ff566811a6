"""`cumulo dev hosts ...`: compute hosts in network namespaces on one machine (cumulo.dev.hosts).

    cumulo dev hosts up N [--base DIR] [--start --database URL --transport URL [--config FILE]]
    cumulo dev hosts start NAME... --database URL --transport URL [--config FILE]
    cumulo dev hosts list|kill NAME|stop NAME|down [--purge]
    cumulo dev hosts l3-port NAME --physnet public   (the L3 host's end of the external wire)
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from pathlib import Path

from cumulo.dev.hosts import BRIDGE, CIDR, DevHosts

DEFAULT_BASE = Path("/var/lib/cumulo-dev-hosts")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser("dev", help="developer tools: compute hosts in network namespaces on one machine")
    dsub = dev.add_subparsers(dest="dev_command", required=True)
    hosts = dsub.add_parser("hosts", help="dev compute hosts: netns cumulo-host-<name> on the underlay bridge cumulo-ul0")
    hosts.add_argument("action", choices=("up", "start", "list", "kill", "stop", "down", "l3-port"))
    hosts.add_argument("args", nargs="*", help="up: N; start: host names (default all); kill/stop: a host name; "
                       "l3-port: the L3 host's name")
    hosts.add_argument("--base", type=Path, default=DEFAULT_BASE, help="the hosts' state dirs and hosts.json")
    hosts.add_argument("--bridge", default=BRIDGE, help=f"the underlay bridge (default {BRIDGE})")
    hosts.add_argument("--cidr", default=CIDR, help=f"the underlay range (default {CIDR}; .1 is the bridge's)")
    hosts.add_argument("--start", action="store_true", help="up: also start each host's `cumulo compute`")
    hosts.add_argument("--database", default="", help="the cloud's database URL (reach it at the bridge's address); "
                       "passed to the hosts in their environment, never their argv; better in --config")
    hosts.add_argument("--transport", default="", help="the cloud's amqp:// URL (as --database)")
    hosts.add_argument("--config", default=None, help="the cloud's settings file")
    hosts.add_argument("--purge", action="store_true", help="down: remove the base dir too")
    hosts.add_argument("--physnet", default="", help="up/start/l3-port: an external wire (a bridge <bridge>px) for "
                       "this physical network (e.g. public): each host's ex0 on it, mapped in its compute process "
                       "(CUMULO_PHYSICAL_INTERFACE_MAPPINGS=<physnet>:ex0); l3-port prints the end to map on the L3 "
                       "host (give it to every call)")


async def _run(args: argparse.Namespace) -> int:
    dev = DevHosts(args.base, bridge=args.bridge, cidr=args.cidr, physnet=args.physnet)
    act = args.action
    if act == "l3-port":
        if len(args.args) != 1 or not args.physnet:
            raise SystemExit("cumulo dev hosts l3-port NAME --physnet PHYSNET")
        end = await dev.l3_port(args.args[0])
        print(json.dumps({"interface": end, "mapping": f"{args.physnet}:{end}"}))
        return 0
    if act == "up":
        if len(args.args) != 1 or not args.args[0].isdigit():
            raise SystemExit("cumulo dev hosts up N")
        made = await dev.up(int(args.args[0]))
        if args.start:
            for h in made:
                await dev.start(h.name, database=args.database, transport=args.transport, config=args.config)
    elif act == "start":
        for name in args.args or [h.name for h in dev.hosts()]:
            await dev.start(name, database=args.database, transport=args.transport, config=args.config)
    elif act in ("kill", "stop"):
        if len(args.args) != 1:
            raise SystemExit(f"cumulo dev hosts {act} NAME")
        if act == "kill":
            print(json.dumps({"killed": await dev.kill(args.args[0])}))
        else:
            await dev.stop(args.args[0])
    elif act == "down":
        await dev.down(purge=args.purge)
        return 0
    for h in dev.hosts():
        print(json.dumps({**asdict(h), "netns": h.ns, "running": dev.running(h)}))
    return 0


def main(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))

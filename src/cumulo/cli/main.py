"""`cumulo` command line: `cumulo up` runs the all-in-one cloud in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from cumulo import conf as conf_mod
from cumulo.cli import host_drain, image_build, procs
from cumulo.cli.common import CLOUD_UMASK, _driver_list, _loop_factory
from cumulo.dev import cli as dev_cli


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cumulo", description="Cumulo compute cloud")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run the all-in-one cloud in the foreground")
    # These flags are a stable interface: automation depends on them.
    up.add_argument("--state-dir", type=Path, default=None, help="where the DB, images and clouds.yaml live")
    up.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=None, help="port to listen on (default 8080)")
    up.add_argument("--metrics-host", default=None,
                    help="address of the admin-only Prometheus endpoint /metrics (default 127.0.0.1)")
    up.add_argument("--metrics-port", type=int, default=None,
                    help="port of the Prometheus endpoint (default 9180; 0 turns it off)")
    up.add_argument("--fake-hosts", type=int, default=None, help="add N simulated compute hosts (fake driver)")
    up.add_argument(
        "--driver", type=_driver_list, default=None, metavar="DRIVERS",
        help="drivers of the local compute host, a comma list (each is one compute node): runc (real "
        "containers), qemu (real VMs), fake (simulated); or auto (the default): runc when root and runc "
        "is installed, plus qemu when QEMU is installed",
    )
    up.add_argument("--no-external", dest="external_link", action="store_const", const=False, default=None,
                    help="no host link to the external network `public` (floating IPs are then not reachable "
                    "from the host)")
    up.add_argument("--config", type=Path, default=None, help="settings file (YAML)")
    up.add_argument("--database", default=None,
                    help="database URL (default: SQLite in the state dir; postgresql://user:pw@host:port/db)")
    up.add_argument("--transport", default=None, help="bus (default inproc; amqp://user:pw@host:port/vhost)")
    up.add_argument("--log-level", default="warning")
    image_build.add_parser(sub)
    dev_cli.add_parser(sub)  # cumulo dev hosts ...: compute hosts in namespaces on one machine
    procs.add_parsers(sub)  # cumulo api|conductor|scheduler|compute: the processes of a split cloud
    host_drain.add_parser(sub)  # cumulo admin host drain HOST: disable, then live-migrate everything off
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        return _up(args)
    if args.command == "image":
        return image_build.run(args)
    if args.command == "dev":
        return dev_cli.main(args)
    if args.command in procs.ROLE_HELP:
        return procs.run(args)
    if args.command == "admin":
        return host_drain.main(args)
    return 2




def _up(args: argparse.Namespace) -> int:
    # Everything the cloud and its helpers (qemu-img, runc, SQLite) create is private to its user;
    # what a guest must read gets an explicit mode (docs/operations.md, "The state dir").
    os.umask(CLOUD_UMASK)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = conf_mod.load(
        args.config,
        state_dir=args.state_dir,
        host=args.host,
        port=args.port,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        fake_hosts=args.fake_hosts,
        local_driver=args.driver,
        external_link=args.external_link,
        database=args.database,
        transport=args.transport,
    )
    if settings.fake_hosts < 0:
        print("--fake-hosts must be 0 or more", file=sys.stderr)
        return 2
    from cumulo.identity import passwords

    try:
        passwords.configure(settings.password_hash_time_cost, settings.password_hash_memory_kib,
                            settings.password_hash_parallelism)
    except ValueError as exc:
        print(f"cumulo up: {exc}", file=sys.stderr)
        return 2
    from cumulo.runtime import local_driver_names, plan_nodes

    try:
        # Resolved once here ("auto" → runc and/or qemu, or fake with its warning), so the cloud
        # gets explicit names; the node plan checks local_node_ratios.
        drivers = local_driver_names(settings)
        plan_nodes(settings, drivers)
        settings = settings.replace(local_driver=",".join(drivers))
    except ValueError as exc:
        print(f"cumulo up: {exc}", file=sys.stderr)
        return 2
    metrics_sock = None
    if settings.metrics_port:
        from cumulo.monitoring import endpoint

        try:  # before anything starts: a taken port is an error now, not a cloud without metrics
            metrics_sock = endpoint.bind(settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            print(f"cumulo up: cannot listen for metrics on {settings.metrics_host}:{settings.metrics_port}: "
                  f"{exc} (choose another --metrics-port, or 0 to turn metrics off)", file=sys.stderr)
            return 2
    try:
        with asyncio.Runner(loop_factory=_loop_factory(settings.local_driver)) as runner:
            runner.run(_serve(settings, args.log_level, metrics_sock))
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(settings: conf_mod.Settings, log_level: str, metrics_sock: socket.socket | None = None) -> None:
    import uvicorn

    from cumulo.runtime import Cloud

    cloud = Cloud(settings)
    await cloud.start()
    config = uvicorn.Config(
        cloud.asgi_app(),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        # Clients poll every 5 s (osc --wait); uvicorn's 5 s default races them on pooled connections.
        timeout_keep_alive=75,
        # Each family sets its own Server header where it has one (OCCI's "cumulo/x OCCI/1.2", GFD.223);
        # uvicorn's would make it a second one.
        server_header=False,
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown; with the default handlers that
    # kills the process before cloud.stop() below runs. No-op handlers let the shutdown finish.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda _sig, _frame: None)
    metrics = await _start_metrics(cloud, settings, log_level, metrics_sock)

    async def announce() -> None:
        while not server.started or (metrics is not None and not metrics[0].started):
            await asyncio.sleep(0.02)
        clouds = cloud.clouds_yaml_path().resolve()
        print(f"Cumulo is ready. Auth URL: {settings.public_url}/identity/v3", flush=True)
        for plan in cloud.nodes:
            if plan.local:
                cpu = f", vCPU allocation ratio {plan.ratios['VCPU']:g}" if "VCPU" in plan.ratios else ""
                print(f"  local compute host {plan.host}: node {plan.node}, {plan.driver} driver{cpu}, "
                      "shared pool", flush=True)
        if metrics is not None and metrics_sock is not None:
            from cumulo.monitoring import endpoint

            print(f"  metrics (admins only): {endpoint.url(settings.metrics_host, metrics_sock)}, "
                  f"scrape secret in {(settings.state_dir / endpoint.SECRET_FILE).resolve()}", flush=True)
        print(f"  export OS_CLIENT_CONFIG_FILE={clouds}", flush=True)
        print("  openstack --os-cloud cumulo server list       # as admin", flush=True)
        print("  openstack --os-cloud cumulo-demo server list  # as the demo user", flush=True)

    notifier = asyncio.create_task(announce())
    try:
        await server.serve()
    finally:
        notifier.cancel()
        if metrics is not None:
            metrics[0].should_exit = True
            with contextlib.suppress(Exception):
                await metrics[1]
        await cloud.stop()


async def _start_metrics(cloud: Any, settings: conf_mod.Settings, log_level: str,
                         sock: socket.socket | None) -> tuple[Any, asyncio.Task[None]] | None:
    """The admin-only Prometheus endpoint on its own socket (monitoring/endpoint.py), or None when off."""
    if sock is None:
        return None
    from cumulo.monitoring import endpoint

    registry = endpoint.build_registry(cloud.managers, cloud.db, asyncio.get_running_loop())
    secret = await asyncio.to_thread(endpoint.ensure_secret, settings.state_dir)
    server = endpoint.make_server(endpoint.MetricsApp(registry, cloud.services.identity, secret), log_level)
    return server, asyncio.create_task(server.serve(sockets=[sock]))


if __name__ == "__main__":
    sys.exit(main())

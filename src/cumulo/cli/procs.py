"""`cumulo api|conductor|scheduler|compute`: the separate processes of a cloud (issue 14, D1).

All take `--config FILE --database URL --transport URL --state-dir DIR` (the same settings as
`cumulo up`; a flag wins over CUMULO_* and the file). See runtime_procs for what each runs and
docs/operations.md ("Several processes and machines") for how to lay them out.
"""

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
from cumulo.cli.common import CLOUD_UMASK, _driver_list, _loop_factory

ROLE_HELP = {
    "api": "the HTTP front door (runs the migrations and the first-start bootstrap once)",
    "conductor": "the conductor, a PaaS engine and (on one leader) the PaaS autoscaler",
    "scheduler": "the scheduler",
    "compute": "one host's compute agent, network agent, volume worker and metadata service",
}


def add_parsers(sub: Any) -> None:
    for role, text in ROLE_HELP.items():
        p = sub.add_parser(role, help=f"run {text}")
        p.add_argument("--config", type=Path, default=None, help="settings file (YAML; the keys of the settings)")
        p.add_argument("--database", default=None,
                       help="database URL: postgresql://user:pw@host:port/db or sqlite:///path (one process only); "
                       "an argv is every local user's to read (ps): give a password in --config or CUMULO_DATABASE")
        p.add_argument("--transport", default=None, help="bus URL: amqp://user:pw@host:port/vhost (or inproc); "
                       "a password: in --config or CUMULO_TRANSPORT, as --database")
        p.add_argument("--state-dir", type=Path, default=None, help="this process's state dir")
        p.add_argument("--log-level", default="warning")
        if role == "api":
            p.add_argument("--host", dest="listen_host", default=None, help="address to listen on (default 127.0.0.1)")
            p.add_argument("--port", type=int, default=None, help="port to listen on (default 8080)")
            p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes on the one port")
            p.add_argument("--no-external", dest="external_link", action="store_const", const=False, default=None,
                           help="the first-start network `public` gets no host link")
        else:
            p.add_argument("--host", dest="host_name", default=None, required=role == "compute",
                           help="this host's name (its service rows; compute: its bus topics compute.<NAME>, "
                           "network.<NAME>, volume.<NAME>)")
        if role == "compute":
            p.add_argument("--fake-hosts", type=int, default=None, help="also run N simulated hosts (fake driver)")
            p.add_argument("--driver", type=_driver_list, default=None, metavar="DRIVERS",
                           help="drivers of this host, a comma list of runc, qemu, fake; or auto (the default)")
            p.add_argument("--metrics-host", default=None, help="address of this host's Prometheus endpoint")
            p.add_argument("--metrics-port", type=int, default=None,
                           help="port of this host's Prometheus endpoint (default 9180; 0 turns it off)")
            p.add_argument("--no-external", dest="external_link", action="store_const", const=False, default=None,
                           help="as the L3 host: no host link to the external network")


def settings_of(args: argparse.Namespace) -> conf_mod.Settings:
    if args.config is not None and not args.config.is_file():
        raise ValueError(f"--config {args.config}: no such file")
    overrides: dict[str, Any] = {
        "state_dir": args.state_dir,
        "database": args.database,
        "transport": args.transport,
        "host": getattr(args, "listen_host", None),
        "port": getattr(args, "port", None),
        "host_name": getattr(args, "host_name", None),
        "fake_hosts": getattr(args, "fake_hosts", None),
        "local_driver": getattr(args, "driver", None),
        "metrics_host": getattr(args, "metrics_host", None),
        "metrics_port": getattr(args, "metrics_port", None),
        "external_link": getattr(args, "external_link", None),
    }
    return conf_mod.load(args.config, **overrides)


def run(args: argparse.Namespace) -> int:
    os.umask(CLOUD_UMASK)
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s {args.command} %(name)s: %(message)s")
    try:
        settings = settings_of(args)
        if settings.fake_hosts < 0:
            raise ValueError("--fake-hosts must be 0 or more")
        if settings.transport == "inproc":
            raise ValueError("the processes of a split cloud share a bus: --transport amqp://user:pw@host:port/vhost")
        from cumulo.identity import passwords

        passwords.configure(settings.password_hash_time_cost, settings.password_hash_memory_kib,
                            settings.password_hash_parallelism)
        if args.command == "compute":
            from cumulo.runtime import local_driver_names, plan_nodes

            drivers = local_driver_names(settings)
            plan_nodes(settings, drivers)
            settings = settings.replace(local_driver=",".join(drivers))
    except ValueError as exc:
        print(f"cumulo {args.command}: {exc}", file=sys.stderr)
        return 2
    if args.command == "api" and args.workers > 1:
        return _api_workers(args, settings)
    metrics_sock = None
    if args.command == "compute" and settings.metrics_port:
        from cumulo.monitoring import endpoint

        try:  # before anything starts, as `cumulo up`: a taken port is an error now
            metrics_sock = endpoint.bind(settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            print(f"cumulo compute: cannot listen for metrics on {settings.metrics_host}:{settings.metrics_port}: "
                  f"{exc} (choose another --metrics-port, or 0 to turn metrics off)", file=sys.stderr)
            return 2
    loop = _loop_factory(settings.local_driver) if args.command == "compute" else _uvloop()
    try:
        with asyncio.Runner(loop_factory=loop) as runner:
            runner.run(_serve(args.command, settings, args.log_level, metrics_sock))
    except KeyboardInterrupt:
        pass
    return 0


def _uvloop() -> Any:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def _serve(role: str, settings: conf_mod.Settings, log_level: str, metrics_sock: socket.socket | None = None
                 ) -> None:
    from cumulo.runtime_procs import ROLES, ApiProcess, Lifespan

    process = ROLES[role](settings)
    if isinstance(process, ApiProcess):
        await _serve_http(Lifespan(process), settings, log_level)
        return
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # SIGTERM while it starts (waiting for the schema, the broker, ...) stops it too, at once.
    starting = asyncio.ensure_future(process.start())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
            with contextlib.suppress(Exception):
                await process.stop()
            return
        starting.result()
    except BaseException:
        starting.cancel()
        with contextlib.suppress(Exception):  # what started goes down (a schema that never came, ...)
            await process.stop()
        raise
    finally:
        stopping.cancel()
    metrics = await _start_metrics(process, settings, log_level, metrics_sock)
    print(f"cumulo {role} is ready (host {settings.host_name})", flush=True)
    try:
        await stop.wait()
    finally:
        if metrics is not None:
            metrics[0].should_exit = True
            with contextlib.suppress(Exception):
                await metrics[1]
        await process.stop()


async def _serve_http(app: Any, settings: conf_mod.Settings, log_level: str) -> None:
    import uvicorn

    server = uvicorn.Server(_uvicorn_config(app, settings, log_level))
    for sig in (signal.SIGTERM, signal.SIGINT):  # see cli.main._serve: let the graceful shutdown finish
        signal.signal(sig, lambda _sig, _frame: None)

    async def announce() -> None:
        while not server.started:
            await asyncio.sleep(0.02)
        for line in api_ready_lines(settings):
            print(line, flush=True)

    notifier = asyncio.create_task(announce())
    try:
        await server.serve()
    finally:
        notifier.cancel()


def api_ready_lines(settings: conf_mod.Settings) -> list[str]:
    """What `cumulo api` prints once it serves: the auth URL, and the clouds.yaml its bootstrap
    wrote (as `cumulo up` says it: an operator on the controller connects with it)."""
    from cumulo.runtime_roles import clouds_yaml_path

    return [f"cumulo api is ready. Auth URL: {settings.public_url}/identity/v3",
            f"  export OS_CLIENT_CONFIG_FILE={clouds_yaml_path(settings).resolve()}"]


def _uvicorn_config(app: Any, settings: conf_mod.Settings, log_level: str, **kw: Any) -> Any:
    import uvicorn

    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level, access_log=False,
                          lifespan="on", timeout_keep_alive=75, server_header=False, **kw)


def _api_workers(args: argparse.Namespace, settings: conf_mod.Settings) -> int:
    """N uvicorn worker processes on one port; each builds its API process from the environment
    (runtime_procs.api_worker_app): the settings file and the flags given are passed on as
    CUMULO_CONFIG and CUMULO_* values."""
    import uvicorn

    if args.config is not None:
        os.environ[conf_mod.CONFIG_ENV] = str(args.config.resolve())
    for name in ("state_dir", "database", "transport", "host", "port", "external_link"):
        os.environ["CUMULO_" + name.upper()] = str(getattr(settings, name))
    print(f"cumulo api: {args.workers} workers on {settings.public_url}", flush=True)
    uvicorn.run("cumulo.runtime_procs:api_worker_app", factory=True, host=settings.host, port=settings.port,
                workers=args.workers, log_level=args.log_level, access_log=False, lifespan="on",
                timeout_keep_alive=75, server_header=False)
    return 0


async def _start_metrics(process: Any, settings: conf_mod.Settings, log_level: str,
                         sock: socket.socket | None) -> tuple[Any, asyncio.Task[None]] | None:
    """A compute process's Prometheus endpoint: the metrics of its own servers (admins only)."""
    if sock is None or not getattr(process, "managers", None):
        return None
    from cumulo.monitoring import endpoint

    registry = endpoint.build_registry(process.managers, process.db, asyncio.get_running_loop())
    secret = await asyncio.to_thread(endpoint.ensure_secret, settings.state_dir)
    server = endpoint.make_server(endpoint.MetricsApp(registry, process.services.identity, secret), log_level)
    return server, asyncio.create_task(server.serve(sockets=[sock]))

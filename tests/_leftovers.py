"""What the test session leaves of Cumulo's data plane on the host (issue 10, acceptance 10).

`now()` lists the `cnet-`/`crtr-` namespaces, the runc driver's `cumulo-<uuid>` namespaces, the
`cxh...`/`tap...` links in the host's root namespace, the dnsmasq processes of Cumulo's DHCP run
dir and the `cumulo...` nftables tables of the root namespace, and (issue 14) the dev hosts'
`cumulo-host-<name>` namespaces and the clusters' `cucl<N>` underlay bridges (tests/system/cluster.py
records its own: `record_dev_hosts`). `Session` records what was there
at its start, samples the network agents' ownership registry while it runs (the ids each of the
session's clouds registered, `SESSION_STATE_DIRS`) and at its end says what is new and the
session's:

- an item derived from an id one of the session's clouds registered, or from a server one of them
  had (`SESSION_INSTANCES`, read from their DBs at close);
- an item nobody owns (no cloud registered its id: a test's planted orphan, a contract test's
  namespace, a tap or a table in the root namespace) when no other cloud runs on the host; with
  another running (a parallel test run, a developer's cloud), such items are only reported, as
  they may be that other run's;
- never an item another running cloud registered.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import threading
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

NETNS = Path("/run/netns")
REGISTRY = Path("/run/cumulo/netplane-owners")
DHCP_RUN_DIR = Path("/run/cumulo/dhcp")
DEV_HOST_NS = "cumulo-host-"
CLUSTER_BRIDGE = "cucl"

# Filled by tests/system/conftest.py: the state dirs of the session's clouds, and every server they had.
SESSION_STATE_DIRS: set[str] = set()
SESSION_INSTANCES: set[str] = set()
SESSION_DEV_HOSTS: set[str] = set()  # the clusters' dev host names and underlay bridges
# One test run (a plain pytest process, or an xdist controller and its workers) shares a tag
# (tests/conftest.py sets it in each process): its clouds' roots are named `cumulo-sys-<tag>-...`
# (`cloud_root_prefix`), so the controller's `Session` knows a worker's cloud as the run's own, and
# each process appends the servers its clouds had to a file in `RUN_DIR` (`record_instances`).
RUN_TAG = ""
RUN_DIR: Path | None = None


def cloud_root_prefix() -> str:
    return f"cumulo-sys-{RUN_TAG}-" if RUN_TAG else "cumulo-sys-"


def record_instances(uuids: set[str]) -> None:
    """The servers a cloud of this run had (read from its DB at its close): their runc namespaces are the run's."""
    SESSION_INSTANCES.update(uuids)
    if RUN_DIR is not None and uuids:
        with open(RUN_DIR / f"instances-{os.getpid()}.txt", "a") as fh:
            fh.write("".join(f"{u}\n" for u in sorted(uuids)))


def record_dev_hosts(names: list[str], bridge: str) -> None:
    """A cluster's dev hosts (tests/system/cluster.py) and its underlay bridge: their netns
    `cumulo-host-<name>` and the bridge are the run's."""
    SESSION_DEV_HOSTS.update([*names, bridge])
    if RUN_DIR is not None:
        with open(RUN_DIR / f"devhosts-{os.getpid()}.txt", "a") as fh:
            fh.write("".join(f"{n}\n" for n in [*names, bridge]))


def _run_dev_hosts() -> set[str]:
    out = set(SESSION_DEV_HOSTS)
    if RUN_DIR is not None:
        for path in RUN_DIR.glob("devhosts-*.txt"):
            with contextlib.suppress(OSError):
                out.update(line.strip() for line in path.read_text().splitlines() if line.strip())
    return out


def _run_instances() -> set[str]:
    out = set(SESSION_INSTANCES)
    if RUN_DIR is not None:
        for path in RUN_DIR.glob("instances-*.txt"):
            with contextlib.suppress(OSError):
                out.update(line.strip() for line in path.read_text().splitlines() if line.strip())
    return out


@dataclass(frozen=True, order=True)
class Item:
    kind: str  # netns, link, dnsmasq, nft
    name: str
    ident: str = ""  # the network/router/instance id it derives from, or a link's id hex prefix

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


def _uuid(text: str) -> str:
    try:
        return str(uuidlib.UUID(text))
    except ValueError:
        return ""


def _run(*argv: str) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)  # noqa: S603
    return done.stdout if done.returncode == 0 else ""


def now() -> set[Item]:
    items: set[Item] = set()
    with contextlib.suppress(OSError):
        for entry in NETNS.iterdir():
            for prefix in ("cnet-", "crtr-", "cumulo-"):
                if entry.name.startswith(prefix) and (ident := _uuid(entry.name[len(prefix):])):
                    items.add(Item("netns", entry.name, ident))
            if entry.name.startswith(DEV_HOST_NS):  # a dev host (cumulo.dev.hosts)
                items.add(Item("netns", entry.name, entry.name[len(DEV_HOST_NS):]))
    for link in json.loads(_run("ip", "-j", "link", "show") or "[]"):
        name = str(link.get("ifname", ""))
        if name.startswith(("cxh", "tap")):
            items.add(Item("link", name, name[3:]))
        elif name.startswith(CLUSTER_BRIDGE):  # a cluster's underlay bridge (tests/system/cluster.py)
            items.add(Item("link", name, name))
    marker = f"--pid-file={DHCP_RUN_DIR}/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == "dnsmasq":
            for arg in argv:
                if arg.startswith(marker):
                    net = arg[len(marker):].split("/")[0]
                    items.add(Item("dnsmasq", f"{proc.name} (network {net})", _uuid(net)))
    for line in _run("nft", "list", "tables").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].startswith("cumulo"):
            items.add(Item("nft", f"table {parts[1]} {parts[2]} in the root namespace"))
    return items


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _entries() -> list[tuple[str, int, list[str]]]:
    out = []
    with contextlib.suppress(OSError):
        for entry in REGISTRY.glob("*.json"):
            try:
                data = json.loads(entry.read_text())
                out.append((str(data["owner"]), int(data["pid"]), [str(i) for i in data["ids"]]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return out


def _ours(owner: str) -> bool:
    if owner in SESSION_STATE_DIRS:
        return True
    # a cloud of this run in another process (an xdist worker): its root is named by the run's tag
    return bool(RUN_TAG) and Path(owner).parent.name.startswith(cloud_root_prefix())


def instances_of(state_dir: Path) -> set[str]:
    """Every server uuid the cloud's DB has (deleted ones too): its runc namespaces are the session's."""
    db = state_dir / "cumulo.sqlite"
    if not db.exists():
        return set()
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return {str(r[0]) for r in conn.execute("SELECT uuid FROM instances")}
        finally:
            conn.close()
    except sqlite3.Error:
        return set()


class Session:
    """`start()` at the session's start, `leftovers()` at its end (see the module's docstring)."""

    def __init__(self) -> None:
        self.start_items: set[Item] = set()
        self.ours: set[str] = set()  # every id a cloud of the session registered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="leftover-registry", daemon=True)

    def start(self) -> None:
        self.start_items = now()
        self._thread.start()

    def _sample(self) -> None:
        while True:
            self._collect()
            if self._stop.wait(0.5):
                return

    def _collect(self) -> None:
        for owner, _, ids in _entries():
            if _ours(owner):
                self.ours.update(ids)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._collect()

    def leftovers(self) -> tuple[list[Item], list[Item]]:
        """(the session's leftovers, new items it cannot tell are its own while other clouds run)."""
        foreign: set[str] = set()
        others_run = False
        for owner, pid, ids in _entries():
            if not _ours(owner) and (_alive(pid) or Path(owner).exists()):
                foreign.update(ids)
                others_run = others_run or _alive(pid)
        hexes = {i: uuidlib.UUID(i).hex[:11] for i in {*self.ours, *foreign} if _uuid(i)}
        ours_hex = {hexes[i] for i in self.ours if i in hexes}
        foreign_hex = {hexes[i] for i in foreign if i in hexes}
        mine: list[Item] = []
        unsure: list[Item] = []
        instances = _run_instances()
        dev_hosts = _run_dev_hosts()
        for item in sorted(now() - self.start_items):
            if item.name.startswith((DEV_HOST_NS, CLUSTER_BRIDGE)):
                owned, theirs = item.ident in dev_hosts, False
            elif item.kind == "netns" and item.name.startswith("cumulo-"):
                owned, theirs = item.ident in instances, False
            elif item.kind == "link" and item.name.startswith("cxh"):
                owned, theirs = item.ident in ours_hex, item.ident in foreign_hex
            else:
                owned, theirs = item.ident in self.ours, item.ident in foreign
            if owned:
                mine.append(item)
            elif not theirs:
                (unsure if others_run else mine).append(item)
        return mine, unsure

"""nftables for Cumulo's namespaces: values checked and rendered for `nft -f`, scripts applied
atomically inside a namespace, and Cumulo's own tables listed and deleted.

Everything a script carries passes through a checker here first (interface names, MACs,
addresses, prefixes, chain and set names built from ids), so a tenant's input never reaches the
nft parser as text of its own. Templates (string.Template) hold the fixed shape of each table;
the modules that render rules (secgroups.py, router.py) only fill them with checked values.

One `nft -f -` run is one kernel transaction: a script that replaces a whole table
(`replace_table`) or flushes and refills a chain or a set swaps it with no window in which
packets meet a half-made ruleset.

`apply` hands the script to libnftables (the library `nft` itself is, loaded with ctypes) in a
throw-away thread that joined the namespace (netns.run_in): the same parser and the same one
transaction, without `ip netns exec` + `nft` (two execs and a mount namespace, 2-5 ms on a busy
host, more than a small script's whole commit). Without the library, or outside a namespace,
it runs `nft -f -`. Replacing a table with base chains is slow whichever way (the kernel waits
for an RCU grace period per hook it unregisters, ~5-12 ms here), so callers that can change a
table in place (secgroups' deltas) do.
"""

from __future__ import annotations

import ctypes
import ipaddress
import json
import re
import threading
from collections.abc import Iterable
from string import Template

from cumulo import host
from cumulo.errors import HostError, Invalid
from cumulo.netplane import netns
from cumulo.netplane.netns import IP

NFT = "nft"
TABLE_PREFIX = "cumulo"
FAMILIES = ("ip", "ip6", "inet", "bridge", "arp", "netdev")
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

REPLACE_TABLE = Template("""\
table $family $name {}
delete table $family $name
table $family $name {
$body}
""")


def ifname(name: str) -> str:
    """An interface name, quoted for nft (IFNAMSIZ 15; letters, digits, `_.-`)."""
    if not _IFNAME.match(name or ""):
        raise Invalid(f"bad interface name {name!r}")
    return f'"{name}"'


def mac(value: str) -> str:
    value = (value or "").lower()
    if not _MAC.match(value):
        raise Invalid(f"bad MAC address {value!r}")
    return value


def ident(name: str) -> str:
    """A table, chain or set name of our own making."""
    if not _IDENT.match(name or ""):
        raise Invalid(f"bad nftables name {name!r}")
    return name


def address(value: str) -> IPAddress:
    try:
        return ipaddress.ip_address(str(value).split("/")[0])
    except ValueError:
        raise Invalid(f"bad IP address {value!r}") from None


def network(value: str) -> IPNetwork:
    """A prefix; host bits set are cleared (Neutron accepts 10.0.0.5/24 as 10.0.0.0/24)."""
    try:
        return ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        raise Invalid(f"bad IP prefix {value!r}") from None


def prefix(net: IPNetwork) -> str:
    """A prefix as nft writes it: a bare address for a host prefix."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def elements(items: Iterable[str]) -> str:
    """`elements = { a, b }` for a set body, or nothing for an empty set (nft rejects `{ }`)."""
    values = sorted(set(items))
    if not values:
        return ""
    return "elements = { " + ", ".join(values) + " }"


def collapse(nets: Iterable[IPNetwork]) -> list[IPNetwork]:
    """Prefixes merged so none overlaps another (an interval set refuses overlapping elements)."""
    nets = list(nets)
    v4 = [n for n in nets if n.version == 4]
    v6 = [n for n in nets if n.version == 6]
    out: list[IPNetwork] = []
    out.extend(ipaddress.collapse_addresses(v4))
    out.extend(ipaddress.collapse_addresses(v6))
    return out


def replace_table(family: str, name: str, body: str) -> str:
    """A script that replaces table `family name` with `body` (or makes it) in one transaction."""
    if family not in FAMILIES:
        raise Invalid(f"bad nftables family {family!r}")
    return REPLACE_TABLE.substitute(family=family, name=ident(name), body=body)


def delete_table_script(family: str, name: str) -> str:
    """A script that deletes the table if it exists (made first, so a missing one is no error)."""
    if family not in FAMILIES:
        raise Invalid(f"bad nftables family {family!r}")
    return f"table {family} {ident(name)} {{}}\ndelete table {family} {name}\n"


def _argv(ns: str | None, *args: str) -> list[str]:
    if ns is None:
        return [NFT, *args]
    return [IP, "netns", "exec", netns.check_name(ns), NFT, *args]


LIBNFTABLES = "libnftables.so.1"
USE_LIBRARY = True  # False: always `ip netns exec <ns> nft -f -` (tests compare the two)
_lib: ctypes.CDLL | None = None
_lib_tried = False
_lib_lock = threading.Lock()  # one library call at a time (its contexts share process-wide state)


def _library() -> ctypes.CDLL | None:
    """libnftables with the prototypes we call, or None when it cannot be loaded."""
    global _lib, _lib_tried
    with _lib_lock:
        if not _lib_tried:
            _lib_tried = True
            try:
                lib = ctypes.CDLL(LIBNFTABLES, use_errno=True)
                lib.nft_ctx_new.restype = ctypes.c_void_p
                lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
                lib.nft_ctx_free.restype = None
                lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
                for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
                    getattr(lib, name).restype = ctypes.c_int
                    getattr(lib, name).argtypes = [ctypes.c_void_p]
                lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
                lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
                lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
                lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
                _lib = lib
            except (OSError, AttributeError):
                _lib = None
        return _lib


def _run_library(lib: ctypes.CDLL, script: str) -> None:
    """Blocking, in the calling thread's network namespace: the script as one transaction."""
    with _lib_lock:
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise HostError("libnftables: no context")
        try:
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            if lib.nft_run_cmd_from_buffer(ctx, script.encode()) != 0:
                err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace").strip()
                raise HostError(f"nft -f - failed: {err[-2000:]}")
        finally:
            lib.nft_ctx_free(ctx)


async def apply(ns: str, script: str, *, timeout: float = 30.0) -> None:
    """Run `script` as `nft -f -` would, inside the namespace `ns`: all of it, or none of it."""
    lib = _library() if USE_LIBRARY else None
    if lib is not None:
        netns.check_name(ns)
        try:
            await netns.run_in(ns, lambda: _run_library(lib, script))
        except OSError as exc:  # the namespace is not there (or cannot be joined)
            raise HostError(f"nft in {ns}: {exc}") from exc
        return
    await host.run(_argv(ns, "-f", "-"), stdin=script.encode(), timeout=timeout)


async def list_tables(ns: str | None) -> list[tuple[str, str]]:
    """(family, name) of every table in the namespace (None: the host's root namespace)."""
    res = await host.run(_argv(ns, "-j", "list", "tables"), timeout=30)
    data = json.loads(res.text or "{}")
    out: list[tuple[str, str]] = []
    for item in data.get("nftables", []):
        table = item.get("table") if isinstance(item, dict) else None
        if isinstance(table, dict):
            out.append((str(table.get("family")), str(table.get("name"))))
    return out


async def cumulo_tables(ns: str | None) -> list[tuple[str, str]]:
    """The tables of the namespace that Cumulo makes (named `cumulo...`)."""
    return [(f, n) for f, n in await list_tables(ns) if n.startswith(TABLE_PREFIX)]


async def delete_table(ns: str | None, family: str, name: str) -> None:
    """Delete one table; a missing one is fine."""
    if ns is None:
        await host.run([NFT, "-f", "-"], stdin=delete_table_script(family, name).encode(), timeout=30)
    else:
        await apply(ns, delete_table_script(family, name))

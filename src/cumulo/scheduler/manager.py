"""The scheduler: filters then weighers over the compute nodes, answering `select_destinations`.

It only chooses; the conductor claims in placement (atomically) and re-asks when a claim loses a
race. When nothing fits, NoValidHost says which filter removed how many hosts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.errors import NoValidHost
from cumulo.hosts.servicegroup import WorkerService
from cumulo.metrics import control
from cumulo.placement.service import Placement
from cumulo.scheduler.cache import HostStateCache
from cumulo.scheduler.filters import BaseHostFilter, configured_filters
from cumulo.scheduler.hoststate import HostState, RequestSpec
from cumulo.scheduler.weighers import BaseHostWeigher, configured_weighers, weigh_hosts

LOG = logging.getLogger(__name__)

MAX_ALTERNATES = 3
# Times a cached answer may be ranked again because a chosen host's service changed.
RECHECK_ATTEMPTS = 3
FAULT_MESSAGE_MAX = 255


def no_valid_host_message(total: int, removed: Sequence[tuple[str, int, int]], scope: str = "") -> str:
    """Nova's sentence plus, per filter run, how many hosts it removed (fits the 255-char fault message)."""
    head = "No valid host was found."
    if total == 0:
        return f"{head} There are no compute hosts{scope}."
    # Longest form that fits: Nova's full sentence, then without it, then without the "of N".
    tolls = "; ".join(f"{name} removed {n} of {before} hosts" for name, n, before in removed)
    candidates = (
        f"{head} There are not enough hosts available. Filters: {tolls}",
        f"{head} Filters: " + "; ".join(f"{name} removed {n} of {before}" for name, n, before in removed),
        f"{head} Filters ({total} hosts): " + ", ".join(f"{name} removed {n}" for name, n, _ in removed),
        # Many filters (the server group ones run last): only those that removed hosts.
        f"{head} Filters ({total} hosts): " + ", ".join(f"{name} removed {n}" for name, n, _ in removed if n),
    )
    for text in candidates:
        if len(text) <= FAULT_MESSAGE_MAX:
            return text
    return candidates[-1]


def _shortage(f: BaseHostFilter, hosts: list[HostState], spec: RequestSpec) -> str:
    """"Not enough VCPU: ..." when a resource filter removed the last hosts, a filter's own
    `shortage(spec)` note (e.g. the physical network no host maps), else ""."""
    note = getattr(f, "shortage", None)
    if callable(note) and hosts:
        return str(note(spec))
    rc = str(getattr(f, "resource_class", "") or "")
    want = spec.resources.get(rc, 0)
    if not rc or want <= 0 or not hosts:
        return ""
    best = max(h.free(rc) for h in hosts)
    return f"Not enough {rc}: requested {want}, at most {max(best, 0)} free on any host."


def _with_shortage(message: str, lack: str) -> str:
    """The shortage right after Nova's first sentence, in full or as "Out of VCPU." when the
    filter tolls need the room; the tolls are cut last."""
    head = "No valid host was found."
    rest = message[len(head):]
    short = "Out of " + lack.split(":", 1)[0].removeprefix("Not enough ") + "." if lack.startswith("Not enough ") else lack
    for note in (lack, short):
        if len(head) + 1 + len(note) + len(rest) <= FAULT_MESSAGE_MAX:
            return f"{head} {note}{rest}"
    text = f"{head} {short}{rest}"
    return text[: FAULT_MESSAGE_MAX - 3] + "..."


class SchedulerManager:
    def __init__(self, db: Database, conf: Settings, placement: Placement) -> None:
        self.db = db
        self.conf = conf
        self.placement = placement
        self.filters: list[BaseHostFilter] = configured_filters(conf)
        self.weighers: list[BaseHostWeigher] = configured_weighers(conf)
        self.service = WorkerService(db, conf, "nova-scheduler", "scheduler")
        self.cache = HostStateCache(db, placement, conf)

    async def start(self) -> None:
        await self.service.start()

    async def stop(self) -> None:
        await self.cache.close()
        await self.service.stop()

    async def select_destinations(self, request_spec: dict[str, Any], num_instances: int = 1) -> list[dict[str, Any]]:
        """One destination per instance, best first, each with up to 3 alternates; or NoValidHost.

        `request_spec["fresh"]`: read every host state again first (the conductor's reselect after
        its claims lost to others)."""
        (result,) = await self._select([(request_spec, num_instances)])
        if isinstance(result, NoValidHost):
            raise result
        return result

    async def services_changed(self) -> None:
        """The API changed a service (enabled, disabled, forced down or up, deleted): a fanout to
        every scheduler, so none answers from a view that predates it (scheduler/cache.py)."""
        self.cache.services_changed()

    async def select_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Several builds' selections in one message (the conductor batches the builds waiting for
        its select turn): [{request_spec, num_instances}] -> [{"destinations": [...]} or
        {"error": the NoValidHost message}], in order. One cache read and (when the view's services
        may be stale) one service check serve them all, and each pick is consumed before the next request is ranked, so they spread."""
        results = await self._select([(r["request_spec"], int(r.get("num_instances", 1))) for r in requests])
        return [{"error": r.message} if isinstance(r, NoValidHost) else {"destinations": r} for r in results]

    async def _select(self, items: list[tuple[dict[str, Any], int]]) -> list[list[dict[str, Any]] | NoValidHost]:
        hosts = await self.cache.states(fresh=any(bool(rs.get("fresh")) for rs, _ in items))
        specs = [RequestSpec.from_dict(rs) for rs, _ in items]
        subsets: list[list[HostState]] | None = None
        if self.cache.active:
            # The bounded candidates of every request; their services read afresh in one query when
            # the view's may be stale (a change announced, or older than host_cache_seconds).
            subsets = [self.cache.bounded(spec) for spec in specs]
            if self.cache.services_stale:
                await self.cache.recheck({id(h): h for sub in subsets for h in sub}.values())
        out: list[list[dict[str, Any]] | NoValidHost] = []
        for i, ((_, num), spec) in enumerate(zip(items, specs, strict=True)):
            dests: list[dict[str, Any]] = []
            try:
                for _ in range(max(1, int(num))):
                    ranked = await self._rank_cached(spec, subsets[i]) if subsets is not None else self.rank(hosts, spec)
                    chosen = ranked[0]
                    chosen.consume(spec.resources)
                    if subsets is not None and len(ranked) == 1 and not self._fits(chosen, spec):
                        self.cache.refresh_ahead()
                    dest = chosen.destination()
                    dest["alternates"] = [h.destination() for h in ranked[1 : 1 + MAX_ALTERNATES]]
                    dests.append(dest)
                    control.scheduled("selected")
            except NoValidHost as exc:
                out.append(exc)
                continue
            out.append(dests)
        return out

    async def _rank_cached(self, spec: RequestSpec, subset: list[HostState]) -> list[HostState]:
        """Rank the request's bounded candidates (Nova's max_placement_results; their services
        current, see scheduler/cache.py). When none passes, every cached host, with the answer's
        services read afresh when they may be stale; before a NoValidHost (or when services keep
        changing) everything is read again, so a NoValidHost always speaks of every host as they are."""
        try:
            return self.rank(subset, spec, report=False)
        except NoValidHost:
            pass
        reloaded = False
        for _ in range(RECHECK_ATTEMPTS):
            try:
                ranked = self.rank(self.cache.states_now(), spec, report=reloaded)
            except NoValidHost:
                if reloaded:
                    raise
                await self.cache.reload()
                reloaded = True
                continue
            if not self.cache.services_stale or not await self.cache.recheck(ranked[: 1 + MAX_ALTERNATES]):
                return ranked
        await self.cache.reload()
        return self.rank(self.cache.states_now(), spec, report=True)

    @staticmethod
    def _fits(host: HostState, spec: RequestSpec) -> bool:
        """Whether `host` (as cached, after its picks) still has room for `spec`'s resources."""
        return all(host.free(rc) >= n for rc, n in spec.resources.items())

    def rank(self, hosts: list[HostState], spec: RequestSpec, *, report: bool = True) -> list[HostState]:
        """Filter then weigh; raise NoValidHost naming each filter's toll (logged and counted
        when `report`)."""
        candidates = [h for h in hosts if h.host not in spec.ignore_hosts]
        if spec.force_host:
            candidates = [h for h in candidates if h.host == spec.force_host]
        if spec.force_node:
            candidates = [h for h in candidates if h.node == spec.force_node]
        total = len(candidates)
        removed: list[tuple[str, int, int]] = []
        lack = ""
        for f in self.filters:
            before = len(candidates)
            last = candidates
            candidates = f.filter_all(candidates, spec)
            removed.append((f.name, before - len(candidates), before))
            if not candidates:
                lack = _shortage(f, last, spec)
                break
        if not candidates:
            scope = f" matching host {spec.force_host}" if spec.force_host else ""
            message = no_valid_host_message(total, removed, scope)
            if lack:  # name the resource that ran out first: it is what the user needs to know
                message = _with_shortage(message, lack)
            if report:
                LOG.info("%s (request %s)", message, spec.resources)
                control.scheduled("no_valid_host")
            raise NoValidHost(message)
        return [h for _, h in weigh_hosts(self.weighers, candidates, spec)]

"""The scheduler's host-state cache: one placement's cost (nearly) independent of the host count.

Reading every compute node, its service, inventory, usage and pool per request costs O(hosts)
(about 50 ms at 1,000 fake hosts, docs/architecture.md "Scale out (issue 14): scheduling at 1,000
hosts"). From `conf.scheduler.host_cache_min_hosts` nodes on (default 1: every cloud), the
scheduler keeps the host states in memory instead, as Nova's HostManager does:

- a pick consumes from the cached state at once (`HostState.consume`), so the next request sees it
  before the claim commits;
- everything is read again every `host_cache_seconds` (in the background: requests go on from the
  old view meanwhile), when the conductor reselects after a lost claim (`fresh`), and before a
  request is answered NoValidHost; concurrent requests that need a reload share one (`reload`
  coalesces); and, in the background, 5 ms after a pick that left the only host that passed
  unable to take another such request (`refresh_ahead`: capacity freed by deletes is only seen by
  a read, and the next request would otherwise wait for the read its NoValidHost makes first);
- the services (disabled, forced down, last heartbeat, availability zone) come with the cached
  view, and are read again at once when the API says one changed: `compute service set`
  (enable, disable, --down / --up) and `compute service delete` fan `services_changed` out to every
  scheduler (compute.rpc.SchedulerAPI), which marks the view's services stale and starts a read of
  everything; until that read (begun after the message) is in, the hosts about to be ranked (a
  request's bounded candidates, or the answer when every host had to be ranked) get their service
  rows read afresh (`recheck`: one query for a whole batch of requests), as they also do while the
  view is older than `host_cache_seconds`. So an admin's `--disable` or `--down` is never answered
  once the API has answered it (the broker confirmed the fanout before the API answers), and a change
  that sends no message (a direct write in the database) is seen within `host_cache_seconds`.
  Liveness (the last heartbeat) is the view's: a cached `last_seen_up` is never later than the
  truth, so staleness can only make a host look down early (at most host_cache_seconds), never up
  late; a request answered NoValidHost reads everything again first. Nova's scheduler does the
  same with its servicegroup view and the aggregate fanouts. Before (session 11) every request
  read its candidates' services afresh: a PostgreSQL round trip (~0.8 ms) per select.

Usage may be stale (another scheduler's claims, deletes): that only ever costs a retry, because the
claim itself stays an atomic compare-and-swap on the provider's generation in the database
(placement/service.py). Below the threshold every request reads everything afresh, as before
(the default of 100 until issue 14's second pass: on a small cloud that read was five queries
per boot, a round trip each on PostgreSQL, while a cache updated by its own picks is as right at
3 hosts as at 1,000; what it does not see, releases by deletes, only makes hosts look fuller:
a NoValidHost reads everything again first).

`bounded` is Nova's max_placement_results: at most `max_candidates` hosts are filtered and weighed
per request (a random subset of the requested zone, plus the hosts of the request's server group so
affinity and its soft variant can see them); forced hosts and nodes are looked up by name.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable

from cumulo.conf import Settings
from cumulo.db import Database
from cumulo.placement.service import Placement
from cumulo.scheduler.hoststate import HostState, RequestSpec, load_host_states, load_services

LOG = logging.getLogger(__name__)

# A read ahead of need starts this long after the pick that asked for it: once the answer is
# written (the read's own Python would otherwise go first on the loop), and the claim the pick
# leads to has usually committed (a read before it offers that capacity once more: at worst a
# claim lost and a reselect, never an overcommit). Short: the next request may come soon (the
# benchmark's next boot on that host: ~45 ms).
REFRESH_DELAY = 0.005
# ... and at most once in this many times the last read's duration (a read at 1,000 hosts costs
# 50 ms and more: never more than a tenth of the scheduler's time).
REFRESH_SPACING = 10.0


class HostStateCache:
    def __init__(self, db: Database, placement: Placement, conf: Settings) -> None:
        self.db = db
        self.placement = placement
        self.conf = conf
        self._states: list[HostState] = []
        self._by_host: dict[str, list[HostState]] = {}
        self._by_node: dict[str, list[HostState]] = {}
        self._by_az: dict[str | None, list[HostState]] = {}
        self._loaded_at = float("-inf")
        self._loading: asyncio.Future[None] | None = None
        self.reloads = 0  # how many full reads so far (tests and benchmarks look)
        self.rechecks = 0  # how many service reads for the hosts about to be answered (tests look)
        # services_changed() bumps _services_epoch; a full read records the epoch it began at: the
        # view's services are current when no change was announced since.
        self._services_epoch = 0
        self._read_epoch = 0
        self._read_seconds = 0.0  # how long the last full read took
        self._refresh_at: asyncio.TimerHandle | None = None

    @property
    def active(self) -> bool:
        """Whether requests are served from memory (enough nodes for it to pay)."""
        return len(self._states) >= self.conf.scheduler.host_cache_min_hosts

    @property
    def age(self) -> float:
        return time.monotonic() - self._loaded_at

    @property
    def services_stale(self) -> bool:
        """Whether the hosts about to be answered need their services read afresh: a change was
        announced after the last full read began, or the view is older than host_cache_seconds."""
        return self._read_epoch != self._services_epoch or self.age > self.conf.scheduler.host_cache_seconds

    def services_changed(self) -> None:
        """A service changed (the API's fanout): recheck until a full read begun after this is in."""
        self._services_epoch += 1
        if self._loading is None:
            self._start_load()

    async def states(self, *, fresh: bool = False) -> list[HostState]:
        """The host states to rank: from memory, or read again when asked or below the threshold.
        A cache older than host_cache_seconds is read again in the background: requests go on
        from the old one meanwhile (a full read of 1,000 hosts takes 50 ms on SQLite, seconds on
        a busy PostgreSQL)."""
        if fresh or not self.active:
            await self.reload()
        elif self._loading is None and self.services_stale:
            self._start_load()
        return self._states

    def refresh_ahead(self) -> None:
        """The view just ran out for requests like the last one (the only host that passed took
        it): read everything again in the background right after the answer, so that the next such
        request does not wait for the read a NoValidHost would make first (capacity freed by deletes
        is only seen by a read; on a small cloud with creates and deletes that was every few boots).
        Spaced out: not before REFRESH_SPACING times the last read's duration since it began."""
        if self._loading is None and self._refresh_at is None:
            delay = max(REFRESH_DELAY, REFRESH_SPACING * self._read_seconds - self.age)
            self._refresh_at = asyncio.get_running_loop().call_later(delay, self._refresh)

    def _refresh(self) -> None:
        self._refresh_at = None
        if self._loading is None:
            self._start_load()

    def states_now(self) -> list[HostState]:
        return self._states

    async def reload(self) -> None:
        """Read every host state; callers arriving while a read runs share it."""
        await asyncio.shield(self._start_load())

    def _start_load(self) -> asyncio.Future[None]:
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
            self._loading.add_done_callback(self._loaded)
        return self._loading

    async def close(self) -> None:
        """Stop a read still running or about to (the scheduler stops)."""
        if self._refresh_at is not None:
            self._refresh_at.cancel()
            self._refresh_at = None
        if self._loading is not None:
            self._loading.cancel()
            await asyncio.gather(self._loading, return_exceptions=True)

    def _loaded(self, fut: asyncio.Future[None]) -> None:
        self._loading = None
        if not fut.cancelled() and fut.exception() is not None:
            LOG.warning("host state read failed: %s", fut.exception())

    async def _load(self) -> None:
        started, epoch = time.monotonic(), self._services_epoch
        states = await load_host_states(self.db, self.placement)
        by_host: dict[str, list[HostState]] = {}
        by_node: dict[str, list[HostState]] = {}
        by_az: dict[str | None, list[HostState]] = {}
        for h in states:
            by_host.setdefault(h.host, []).append(h)
            by_node.setdefault(h.node, []).append(h)
            by_az.setdefault(h.availability_zone, []).append(h)
        self._states, self._by_host, self._by_node, self._by_az = states, by_host, by_node, by_az
        self._loaded_at, self._read_epoch = started, epoch
        self._read_seconds = time.monotonic() - started
        self.reloads += 1

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    def bounded(self, spec: RequestSpec) -> list[HostState]:
        """At most max_candidates of the cached hosts worth ranking for this request (all when
        there are few; a forced host or node by name)."""
        if spec.force_node:
            return list(self._by_node.get(spec.force_node, []))
        if spec.force_host:
            return list(self._by_host.get(spec.force_host, []))
        states = self._states
        pool = self._by_az.get(spec.availability_zone, []) if spec.availability_zone else states
        limit = max(1, self.conf.scheduler.max_candidates)
        if len(pool) <= limit:
            return pool
        picked = random.sample(pool, limit)
        group = spec.instance_group or {}
        seen = {id(h) for h in picked}
        for host in dict.fromkeys(group.get("hosts") or ()):
            for h in self._by_host.get(str(host), []):
                if id(h) not in seen:
                    picked.append(h)
                    seen.add(id(h))
        return picked

    async def recheck(self, hosts: Iterable[HostState]) -> bool:
        """Read the hosts' service rows again and update them in place; True when one had changed
        (the caller ranks again) or its node is gone (then it counts as having no service, and the
        cache is read again at the next request)."""
        wanted = {h.provider_uuid: h for h in hosts}
        if not wanted:
            return False
        self.rechecks += 1
        fresh = await load_services(self.db, list(wanted))
        changed = False
        for uuid, h in wanted.items():
            if uuid not in fresh:  # the node is gone: never answer it; the next request reads all again
                h.service = None
                self.invalidate()
                changed = True
                continue
            service, az = fresh[uuid]
            if az != h.availability_zone:
                # Keep the zone index right for the next requests.
                old = self._by_az.get(h.availability_zone, [])
                if h in old:
                    old.remove(h)
                self._by_az.setdefault(az, []).append(h)
                h.availability_zone = az
                changed = True
            if _flags(service) != _flags(h.service):
                changed = True
            h.service = service
        return changed


def _flags(service: dict[str, object] | None) -> tuple[bool, bool, bool]:
    if service is None:
        return (False, False, False)
    return (True, bool(service.get("disabled")), bool(service.get("forced_down")))

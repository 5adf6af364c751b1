"""Highly available masters: the wiring between the Master and its replicated store.

- ``--peers id1=URL,id2=URL,...`` and ``--id``: static membership; every master gets the same list.
- The Raft transport's endpoint, and ``read-index`` (a follower asks the leader for a read index,
  then serves the read from its own state once it has applied that far).
- A middleware that makes any master answer any client: on a follower, writes, the agent protocol
  and the scheduler/operator calls answer 307 to the same path on the leader (503 when there is
  none); reads are linearizable (read index on the leader, via the leader on a follower) unless the
  request says ``?stale=1``.
- Leadership: the store reports (leader-and-ready, leader id, term); leader-only work starts once
  this master's no-op is applied and stops as soon as it is deposed. Master.term is the Raft term.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from dcosd.config import master_url, url_address
from dcosd.errors import ConfigError, DcosdError, NotLeader, Unavailable, ValidationError
from dcosd.httputil import error_response, json_response
from dcosd.master.replog.shell import ENTERED_LOG, RaftStore
from dcosd.master.replog.transport import (
    CHUNKS_HEADER,
    CLUSTER_HEADER,
    FROM_HEADER,
    PEERS_HEADER,
    RAFT_PATH,
    TO_HEADER,
    FrameReader,
    HttpTransport,
)
from dcosd.master.services import leader_proxy

if TYPE_CHECKING:
    from dcosd.master.service import Master

log = logging.getLogger(__name__)

READ_INDEX_PATH = "/dcosd/internal/v1/read-index"
# Compact the log into a snapshot after this many applied entries (tests lower it).
SNAPSHOT_EVERY = int(os.environ.get("DCOSD_RAFT_SNAPSHOT_EVERY", "10000"))
# ... and only once the log since the last snapshot holds this many times its image's bytes, or ten
# times SNAPSHOT_EVERY entries (replog/compaction.py). Tests set 0 to compact every SNAPSHOT_EVERY.
SNAPSHOT_SIZE_RATIO = float(os.environ.get("DCOSD_RAFT_SNAPSHOT_SIZE_RATIO", "1"))
# How long a leader waits for another master to take over (the core itself gives up on a transfer
# after an election timeout, 0.4 s; this also covers the new leader's first append reaching us).
HANDOVER_TIMEOUT = 5.0
# A write that arrives during an election (no leader known, or this master just won and has not applied
# its no-op) waits up to this long for its outcome before it is refused with 503: most elections are
# over within one election timeout (0.4-0.8 s).
ELECTION_WAIT = 1.0
# A master that reaches its peers while none of them has reached it for this long says so.
INBOUND_GRACE = float(os.environ.get("DCOSD_RAFT_INBOUND_GRACE", "20"))
# Answered by every master from its own state, leader or not.
_LOCAL = {"/health", "/version", "/redirect", "/master/redirect", RAFT_PATH, READ_INDEX_PATH}
_CLUSTER = "/dcosd/v1/cluster"  # the leader's view when there is one (follower lag), else this master's
# On a follower these go to the leader even when they are GETs (leader-only sessions and streams).
_LEADER_PREFIXES = ("/dcosd/internal/v1/agents", "/api/v1")


_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a master's id travels in raft stream headers


def parse_peers(text: str) -> dict[str, str]:
    """``id1=http://h1:5050,id2=http://h2:5050`` → {id: url} (``h1:5050`` means ``http://h1:5050``)."""
    peers: dict[str, str] = {}
    where: dict[tuple[str, str, int], str] = {}  # (scheme, host, port) -> id: two masters cannot share one
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        pid, sep, url = part.partition("=")
        pid, url = pid.strip(), url.strip()
        if not sep or not pid or not url:
            raise ConfigError(f"--peers: expected ID=URL, got {part!r}")
        if pid in peers:
            raise ConfigError(f"--peers: {pid!r} given twice")
        if not _ID.fullmatch(pid):
            raise ConfigError(f"--peers: the id {pid!r} may hold letters, digits, '.', '_' and '-' only")
        url = master_url(url, f"--peers: {pid}")
        addr = url_address(url)
        if addr in where:
            raise ConfigError(f"--peers: {where[addr]!r} and {pid!r} have the same address {url}")
        where[addr] = pid
        peers[pid] = url
    if len(peers) not in (1, 3, 5, 7):
        log.warning("--peers lists %d masters; use an odd number (3 or 5) so a majority survives failures",
                    len(peers))
    return peers


class HighAvailability:
    def __init__(self, master: Master, peers: dict[str, str], my_id: str, *, rejoin: bool = False,
                 restore: Path | None = None, tick_seconds: float = 0.04) -> None:
        if my_id not in peers:
            raise ConfigError(f"--id {my_id!r} is not one of --peers ({', '.join(sorted(peers))})")
        self.master = master
        self.peers = peers
        self.my_id = my_id
        self.rejoin = rejoin
        self.restore = restore
        self.tick_seconds = tick_seconds
        self.transport = HttpTransport(peers, lambda: master.cluster_secret, self.cluster_id)
        self.store: RaftStore
        self._lock = asyncio.Lock()
        self._pending: asyncio.Task | None = None
        self._http: aiohttp.ClientSession | None = None
        self.leadership_listeners: list[Any] = []  # called with no argument on any change of leader or term
        self._refused_at: dict[str, float] = {}  # peer address -> when its other cluster was last logged
        self._inbound: set[FrameReader] = set()  # raft streams other masters opened to this one, open now
        self._watch: asyncio.Task | None = None
        self.leader_changes = 0  # times this master saw a new leader (etcd: leader_changes_seen_total)
        self._last_leader: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def open_store(self, path: Any) -> RaftStore:
        self.store = RaftStore(path, self.my_id, list(self.peers), send=self.transport.send,
                               loop=asyncio.get_running_loop(), tick_seconds=self.tick_seconds,
                               rejoin=self.rejoin, restore=self.restore, snapshot_threshold=SNAPSHOT_EVERY,
                               snapshot_size_ratio=SNAPSHOT_SIZE_RATIO, on_leadership=self._on_leadership, on_fatal=self._on_fatal)
        self.transport.start(self.my_id)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5, sock_connect=1))
        self._watch = asyncio.get_running_loop().create_task(self._watch_inbound(), name="raft-inbound-watch")
        return self.store

    async def _watch_inbound(self, after: float = INBOUND_GRACE) -> None:
        """Say so when this master reaches its peers but none of them reaches it: their replies never
        arrive, so it can neither lead nor follow, and nothing else would tell why (its URL in --peers
        is not where it listens, or a firewall lets connections out but not in)."""
        alone_since: float | None = None
        while True:
            await asyncio.sleep(after / 4)
            reached = sorted(p for p, up in self.transport.reachable.items() if up)
            if self._inbound or not reached:
                alone_since = None
                continue
            now = time.monotonic()
            alone_since = alone_since or now
            if now - alone_since >= after:
                log.warning("no master has opened a raft stream to this one for %.0fs, though this one reaches %s: "
                            "is %s (this master's URL in --peers) where it listens, and open to them?",
                            now - alone_since, ", ".join(reached), self.peers[self.my_id])
                alone_since = now  # again after as long, while it lasts

    async def hand_over(self) -> None:
        """Before a graceful stop: a leading master hands leadership to the follower with the longest log,
        so writes pause for a round trip and an election instead of an election timeout (etcd does the
        same on SIGTERM). If none takes over, the others elect a leader once this one is gone."""
        store = getattr(self, "store", None)
        if store is None or not store.is_leader or len(self.peers) == 1:
            return
        try:
            new = await store.transfer_leadership(None, timeout=HANDOVER_TIMEOUT)
            log.info("handed leadership to master %s before stopping", new)
        except DcosdError as exc:
            log.warning("could not hand leadership over before stopping (%s); the other masters elect a leader "
                        "once this one is gone", exc)

    async def transfer_leadership(self, to: str | None) -> dict[str, Any]:
        """``dcosd cluster transfer-leader``: move leadership to master ``to`` (None: the follower with the
        longest log), e.g. before maintenance of the leader's machine."""
        if to is not None and to not in self.peers:
            raise ValidationError(f"no master {to!r}; the masters are {', '.join(sorted(self.peers))}")
        previous = self.my_id
        new = await self.store.transfer_leadership(to, timeout=HANDOVER_TIMEOUT)
        return {"leader": new, "leader_url": self.peers.get(new), "previous": previous, "term": self.store.term}

    async def stop(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        if self._watch is not None:
            self._watch.cancel()
        await self.transport.stop()
        for reader in list(self._inbound):  # end the peers' streams: their handlers would hold the HTTP
            reader.feed_eof()               # server's shutdown for its whole timeout
        if self._http is not None:
            await self._http.close()

    def cluster_id(self) -> str | None:
        """The id the cluster's first leader gave it (replicated state), None before that."""
        for (cid,) in self.store.reader.execute("SELECT cluster_id FROM cluster WHERE id = 1"):
            return cid
        return None

    async def _name_the_cluster(self) -> None:
        """Leader-only: a cluster without an id gets one, so that a master with another cluster's state
        (an old data directory, a wrong backup) is refused by this one's (raft_stream)."""
        if self.cluster_id() is None:
            try:
                await self.store.propose({"type": "cluster_init", "cluster_id": uuid.uuid4().hex})
            except (NotLeader, Unavailable):
                pass  # the next leader does it

    def _refusal(self, request: web.Request) -> str | None:
        """Why a peer's raft stream must not be taken, or None."""
        frm, to = request.headers.get(FROM_HEADER), request.headers.get(TO_HEADER)
        if to is not None and to != self.my_id:
            # The same config copied to every machine (all --id m1: each would count the others' votes as
            # its own), or a URL in --peers that names the wrong machine.
            return (f"master {frm} sent raft messages for master {to} to this master, {self.my_id}: either --peers "
                    f"gives {to} this master's address, or this master's --id is wrong")
        ids = ",".join(sorted(self.peers))
        theirs = request.headers.get(PEERS_HEADER)
        if theirs is not None and theirs != ids:
            # Two views of who the masters are make two views of a majority: two leaders in one term.
            return (f"it was started with --peers of masters {theirs}, this master with {ids}: every master "
                    f"needs the same --peers")
        mine, theirs = self.cluster_id(), request.headers.get(CLUSTER_HEADER, "")
        if mine and theirs and theirs != mine:
            # Its term, votes and log are another cluster's: taking its messages would mix two histories.
            return (f"its state is of cluster {theirs}, this is cluster {mine} (a data directory from elsewhere? "
                    f"wipe it and start that master with --rejoin)")
        return None

    def routes(self) -> list[web.RouteDef]:
        return [web.get(RAFT_PATH, self.raft_stream), web.post(READ_INDEX_PATH, self.read_index)]

    # -- leadership -----------------------------------------------------------------------------
    def leader_url(self) -> str | None:
        leader = self.store.leader
        return self.peers.get(leader) if leader else None

    def _on_leadership(self, is_leader: bool, leader: str | None, term: int) -> None:
        m = self.master
        m.leader_url = self.peers.get(leader) if leader else None  # type: ignore[attr-defined]
        if leader is not None and leader != self._last_leader:
            self._last_leader = leader
            self.leader_changes += 1
        if is_leader:
            m.term = term
        log.info("raft: term %d, leader %s%s", term, leader or "unknown", " (this master)" if is_leader else "")
        for listener in self.leadership_listeners:
            listener()
        if self._pending is None or self._pending.done():
            self._pending = asyncio.create_task(self._follow_leadership(), name="leadership")

    async def _follow_leadership(self) -> None:
        async with self._lock:
            while True:
                m = self.master
                want = self.store.is_leader
                if want and not m._tasks:
                    m.become_leader()
                    m._tasks.append(asyncio.create_task(self._name_the_cluster(), name="cluster-id"))
                    log.info("leading: leader-only work started (term %d)", m.term)
                elif not want and m._tasks:
                    await m.step_down()
                    log.info("deposed: leader-only work stopped")
                else:
                    return

    def _on_fatal(self, exc: BaseException) -> None:
        log.critical("the replicated log failed (%s); exiting so this master restarts from its durable state", exc)
        os._exit(70)

    # -- HTTP -----------------------------------------------------------------------------------
    async def raft_stream(self, request: web.Request) -> web.StreamResponse:
        """A peer's messages for this master (replog/transport.py): after the 101, the connection's
        bytes are frames, parsed as they arrive, for as long as the peer keeps it open."""
        self.master.require_agent_secret(request)
        if request.headers.get("Upgrade", "").lower() != "tcp" or not hasattr(request.protocol, "set_parser"):
            return error_response(426, "the raft stream needs 'Connection: Upgrade' and 'Upgrade: tcp'")
        refusal = self._refusal(request)
        if refusal is not None:
            now = time.monotonic()
            if now - self._refused_at.get(request.remote or "", 0.0) > 60:
                self._refused_at[request.remote or ""] = now
                log.error("refusing raft messages from %s: %s", request.remote, refusal)
            return error_response(409, refusal)
        resp = web.StreamResponse(status=101, headers={"Connection": "Upgrade", "Upgrade": "tcp", CHUNKS_HEADER: "1"})
        await resp.prepare(request)
        reader = FrameReader(self.store.step, request.headers.get(FROM_HEADER) or request.remote or "?",
                             images=self.store.path, counts=self.transport.images)
        request.protocol.set_parser(reader)  # type: ignore[union-attr,arg-type]
        self._inbound.add(reader)
        try:
            await reader.done
        finally:
            self._inbound.discard(reader)
        return resp

    async def backup(self) -> tuple[Path, int, int]:
        """The replicated state, as applied here (after the middleware's read barrier: it holds every
        write acknowledged before the request), in a scratch file the caller deletes."""
        return await asyncio.to_thread(self.store.storage.backup_file)

    async def read_index(self, request: web.Request) -> web.Response:
        self.master.require_agent_secret(request)
        return json_response({"index": await self.store.read_index()})

    async def barrier(self) -> None:
        """Wait until this master's state reflects every write acknowledged before the call."""
        store = self.store
        if store.is_leader:
            index = await store.read_index()
        else:
            url = self.leader_url()
            if url is None or store.leader == self.my_id or self._http is None:
                raise Unavailable("no leading master to confirm a linearizable read; retry, or ask with ?stale=1")
            try:
                async with self._http.post(url + READ_INDEX_PATH,
                                           headers={"Authorization": f"Bearer {self.master.cluster_secret}"}) as r:
                    body = await r.json(content_type=None)
                    if r.status != 200:
                        raise Unavailable(f"the leader could not serve a read index ({r.status}): "
                                          f"{body.get('message')}")
                    index = int(body["index"])
            except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
                raise Unavailable(f"cannot reach the leading master for a linearizable read: {exc}") from exc
        await store.wait_applied(index)

    @staticmethod
    def for_the_leader(request: web.Request) -> bool:
        """Whether a follower sends this request to the leader (307, or the leader proxy when asked):
        writes, the leader-only streams, and the cluster view unless it asks for a stale one."""
        path = request.path
        if path in _LOCAL:
            return False
        if path == _CLUSTER:
            return not _stale(request)
        return request.method not in ("GET", "HEAD") or path.startswith(_LEADER_PREFIXES)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if path in _LOCAL:
            return await handler(request)
        stale = _stale(request)
        if path == _CLUSTER:
            url = self.leader_url()
            if not stale and not self.store.is_leader and url and self.store.leader != self.my_id:
                raise web.HTTPTemporaryRedirect(url + request.path_qs)
            return await handler(request)
        read = request.method in ("GET", "HEAD") and not path.startswith(_LEADER_PREFIXES)
        if read:
            if not stale:
                await self.barrier()
            return await handler(request)
        if self.store.handover is not None or not self.store.is_leader or not self.master.is_leader:
            await self._settled_leadership()
            if not self.store.is_leader:
                return await self._to_the_leader(request)
        entered: list[int] = []
        token = ENTERED_LOG.set(entered)
        try:
            return await handler(request)
        except NotLeader:
            if entered:
                raise  # a command of it is in the log and may be committed: its outcome is unknown here
            # Leadership moved while it was being served (its proposal waited for a hand-over, or this
            # master was deposed) and none of it entered the log: it goes on as if it came to a follower.
            await self._settled_leadership()
            if self.store.is_leader:
                raise
            return await self._to_the_leader(request)
        finally:
            ENTERED_LOG.reset(token)

    async def _settled_leadership(self) -> None:
        handover = self.store.handover
        if handover is not None:  # wait for it: then this master leads on, or the write goes to the new leader
            await asyncio.shield(handover)
        if not self.store.is_leader and (self.store.leader is None or self.store.leader == self.my_id):
            await self.store.wait_for_leader(ELECTION_WAIT)
        pending = self._pending
        if self.store.is_leader and not self.master.is_leader and pending is not None and not pending.done():
            # Leader-only work starts a loop turn after the store leads (_follow_leadership); until then
            # handlers refuse writes (Master.require_leader), so a write waits for it, as for an election.
            await asyncio.wait({pending}, timeout=ELECTION_WAIT)

    async def _to_the_leader(self, request: web.Request) -> web.StreamResponse:
        """A write on a master that does not lead: 307 to the leader, or forwarded to it when the client
        asks for that (leader_proxy.py); 503 while no master leads."""
        url = self.leader_url()
        if url is None or self.store.leader == self.my_id:
            return error_response(503, "no leading master right now (election in progress); retry shortly",
                                  leader=None)
        if leader_proxy.wanted(request):
            return await leader_proxy.forward(self.master, request, url)
        raise web.HTTPTemporaryRedirect(url + request.path_qs)

    # -- cluster status -------------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        st = self.store.status()
        followers = st.get("followers", {})
        out = []
        for pid, url in sorted(self.peers.items()):
            d: dict[str, Any] = {"id": pid, "url": url, "leader": pid == st.get("leader"), "term": st["term"]}
            if pid == self.my_id:
                d.update(role=st["role"], commit_index=st["commit"], applied_index=st["applied"],
                         last_index=st["last_index"], snapshot_index=st["snapshot_index"],
                         rejoining=st["rejoining"], self=True, leading=bool(self.master._tasks))
            else:
                d["reachable"] = self.transport.reachable.get(pid, False)  # our raft stream to it is up
            if pid in followers:
                f = followers[pid]
                d.update(match_index=f["match"], lag=f["lag"], replication=f["state"], active=f["active"])
            elif pid == st.get("leader"):
                d["lag"] = 0
            out.append(d)
        return out

    def metrics(self) -> dict[str, float]:
        """For /metrics/snapshot: Mesos' replicated-log gauges, and the Raft log's (as etcd exports them)."""
        st = self.store.status()
        out = {"registrar/log/recovered": 1.0, "registrar/log/ensemble_size": float(len(self.peers)),
               "replog/has_leader": float(st["leader"] is not None), "replog/leader_changes": float(self.leader_changes),
               "replog/term": float(st["term"]), "replog/commit_index": float(st["commit"]),
               "replog/applied_index": float(st["applied"]), "replog/last_index": float(st["last_index"]),
               "replog/snapshot_index": float(st["snapshot_index"])}
        out.update({f"replog/disk/{k}": v for k, v in self.store.disk_times.summary().items()})
        out.update({f"replog/snapshots/{k}": float(v) for k, v in dataclasses.asdict(self.transport.images).items()})
        for pid, f in st.get("followers", {}).items():  # on the leader
            out[f"replog/followers/{pid}/lag"] = float(f["lag"])
            out[f"replog/followers/{pid}/reachable"] = float(self.transport.reachable.get(pid, False))
        return out

    def status(self) -> dict[str, Any]:
        st = dict(self.store.status())
        st["leader_url"] = self.leader_url()
        st["time"] = time.time()
        return st


def _stale(request: web.Request) -> bool:
    return request.query.get("stale") in ("1", "true", "True")


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


__all__ = ["HighAvailability", "NotLeader", "parse_peers"]

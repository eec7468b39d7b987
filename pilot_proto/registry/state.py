"""The registry as a sans-IO state machine (draft 3.2, 10.1, 10.6-10.8, 17, 19.3; wire-notes 1.22).

:class:`Registry` answers the reference registry's JSON requests -- ``register``, ``lookup``,
``resolve``, ``heartbeat``, ``deregister``, ``set_hostname``, ``resolve_hostname``,
``set_visibility``, ``report_trust``, ``revoke_trust``, ``check_trust``, the relayed handshake trio
(``request_handshake``, ``poll_handshakes``, ``respond_handshake``), ``punch`` and the network calls
(``create_network``, ``join_network``, ``leave_network``, ``list_networks``, ``list_nodes``), the
role-gated ones of draft 18.1-18.2 (``promote_member``, ``demote_member``, ``kick_member``,
``transfer_ownership``, ``delete_network``, ``set_network_policy``, ``get_network_policy``,
``get_member_role``), ``get_audit_log`` (18.3), what the daemon's IPC commands of draft 16 need
(``set_tags``, ``set_task_exec``; invite-only networks with ``invite_to_network``, ``poll_invites``,
``respond_invite``) -- and nothing else.  It opens no socket, reads no
clock and draws no randomness.  This module holds the tables and the idiom; the rule for each request
lives in :mod:`~pilot_proto.registry.rules` (nodes, trust, handshakes, keys) and
:mod:`~pilot_proto.registry.networks` (networks, roles, policies, audit log).

The idiom (``pilot_proto/sansio.py``), adapted to request/response:

* ``receive_request(msg, source, now, tag=...)`` returns ``None``;
* ``records_to_persist()`` returns the journal records that the requests so far produced, and
  ``replies_to_send()`` the replies as :class:`Reply` (``tag`` identifies the request).
  **A driver must write and fsync every record it pulled before it sends any reply pulled after
  it**: that is what makes an acknowledged registration survive a crash;
* ``next_event()`` yields :class:`RegistryEvent` values (and one
  :class:`~pilot_proto.sansio.InputRejected` per refused request; a refused request changes nothing);
* ``get_timer()`` / ``handle_timer(now)`` reap nodes whose heartbeats stopped.

``now`` is POSIX time in seconds: signed timestamps (``draft``) and key ages are wall-clock values.
:meth:`Registry.restore` rebuilds the state from the records, in order, that a store file holds.

Safety (each an erratum in ``spec/errata.md``): every write is signed by the node's key, or carries
the admin token (CONS-004..006); an owner name never moves a node ID to a new key (E-REG-1); a trust
pair exists only when *both* nodes consented (E-REG-2); under ``draft`` signatures are timestamped and
not replayable, and registration proves possession of the key (E-REG-3); node IDs 0-3 and 0xFFFFFFFF
are never assigned (E-REG-5); ``punch`` reveals endpoints only as ``resolve`` would (E-REG-6); a role
is exercised only with the acting node's signature (E-REG-10).  Every change also writes an entry to a
bounded audit ring buffer.  Every table is bounded by :class:`RegistryConfig`.
"""

from __future__ import annotations

import base64
import re
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from pilot_proto.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.sansio import Event, InputRejected

__all__ = [
    "RESERVED_NODE_IDS",
    "NetworkInfo",
    "NodeDeregistered",
    "NodeInfo",
    "NodeReaped",
    "NodeRegistered",
    "Registry",
    "RegistryConfig",
    "RegistryEvent",
    "Reply",
    "TrustChanged",
]

#: Node IDs the draft reserves (4.4: unspecified, registry, beacon, nameserver) and broadcast.
RESERVED_NODE_IDS = frozenset({0, 1, 2, 3, 0xFFFFFFFF})
PROTOCOL_VERSION = 1
_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_RESERVED_HOSTNAMES = frozenset({"localhost", "backbone", "broadcast"})
_RESERVED_NETWORKS = frozenset({"backbone"})
_WRITES = frozenset({
    "register", "deregister", "set_hostname", "set_visibility", "report_trust", "revoke_trust",
    "request_handshake", "respond_handshake", "create_network", "join_network", "leave_network",
    "promote_member", "demote_member", "kick_member", "transfer_ownership", "delete_network", "set_network_policy",
    "rotate_key", "set_tags", "set_task_exec", "invite_to_network", "respond_invite",
})  # fmt: skip


@dataclass(frozen=True)
class RegistryConfig:
    """Limits and policy.  Defaults follow Go where Go has a number (wire-notes 3.6)."""

    profile: Profile = DEFAULT_PROFILE
    admin_token: str = ""  # empty: no admin token is accepted (network creation disabled, as Go)
    max_nodes: int = 100_000  # node records, live or dormant (a dormant key keeps its ID)
    max_networks: int = 1024
    max_members: int = 100_000
    max_trust_per_node: int = 1024  # outgoing trust consents per node
    max_handshake_inbox: int = 100  # Go maxHandshakeInbox
    max_invite_inbox: int = 100  # Go maxInviteInbox: pending network invites per node
    max_invites: int = 100_000  # pending invites in all (Go has no total cap): bounds memory and the store
    invite_ttl: float = 30 * 86400.0  # Go inviteTTL: an invite expires after 30 days
    max_lan_addrs: int = 8
    max_audit: int = 1000  # ring buffer of audit entries (ENT-011)
    max_sources: int = 4096  # rate-limiter buckets
    rate: float = 100.0  # requests per second per source host (0: no limit)
    burst: float = 1000.0
    stale_after: float = 180.0  # Go staleNodeThreshold: 3 missed 60 s heartbeats
    reap_interval: float = 60.0
    signature_window: float = 300.0  # draft: |timestamp - now| allowed
    standby: bool = False  # REPL-008: a standby refuses writes

    @classmethod
    def for_profile(cls, profile: Profile | str = DEFAULT_PROFILE, **overrides: Any) -> RegistryConfig:
        return cls(profile=Profile.parse(profile), **overrides)


@dataclass(frozen=True)
class Reply:
    """One reply to send back to the request tagged ``tag``; ``close`` asks the driver to hang up after it."""

    tag: object
    message: dict[str, Any]
    close: bool = False


class RegistryEvent(Event):
    """Base of the registry's own events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class NodeRegistered(RegistryEvent):
    node_id: int
    listen_addr: str
    new: bool  # False: a known key came back and kept its ID


@dataclass(frozen=True, slots=True)
class NodeDeregistered(RegistryEvent):
    node_id: int


@dataclass(frozen=True, slots=True)
class NodeReaped(RegistryEvent):
    node_id: int
    silent_for: float


@dataclass(frozen=True, slots=True)
class TrustChanged(RegistryEvent):
    a: int
    b: int
    trusted: bool


@dataclass
class _Node:
    node_id: int
    public_key: bytes | None
    listen_addr: str
    owner: str = ""
    hostname: str = ""
    public: bool = False
    networks: list[int] = field(default_factory=list)  # non-backbone memberships
    lan_addrs: list[str] = field(default_factory=list)
    live: bool = True
    key_created: float = 0.0
    last_ts: int = 0  # draft anti-replay: newest signed timestamp accepted (ms)
    last_seen: float = 0.0  # soft state, not persisted
    tags: list[str] = field(default_factory=list)  # set_tags (IPC 0x19): what the node advertises
    task_exec: bool = False  # set_task_exec (IPC 0x1D): the node advertises that it executes tasks

    def record(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "public_key": base64.b64encode(self.public_key).decode() if self.public_key else "",
            "listen_addr": self.listen_addr, "owner": self.owner, "hostname": self.hostname,
            "public": self.public, "networks": list(self.networks), "lan_addrs": list(self.lan_addrs),
            "live": self.live, "key_created": self.key_created, "last_ts": self.last_ts,
            "tags": list(self.tags), "task_exec": self.task_exec,
        }  # fmt: skip

    @classmethod
    def from_record(cls, r: dict[str, Any], now: float) -> _Node:
        key = base64.b64decode(r["public_key"]) if r.get("public_key") else None
        return cls(int(r["id"]), key, str(r["listen_addr"]), str(r.get("owner", "")), str(r.get("hostname", "")),
                   bool(r.get("public")), [int(n) for n in r.get("networks", [])],
                   [str(a) for a in r.get("lan_addrs", [])], bool(r.get("live", True)),
                   float(r.get("key_created", 0.0)), int(r.get("last_ts", 0)), now,
                   [str(t) for t in r.get("tags", [])], bool(r.get("task_exec", False)))  # fmt: skip


@dataclass
class _Network:
    net_id: int
    name: str
    join_rule: str = "open"
    token: str = ""
    members: list[int] = field(default_factory=list)
    roles: dict[int, str] = field(default_factory=dict)
    created: float = 0.0
    policy: dict[str, Any] = field(default_factory=dict)  # max_members, allowed_ports, description (ENT-007)

    def record(self) -> dict[str, Any]:
        return {"id": self.net_id, "name": self.name, "join_rule": self.join_rule, "token": self.token,
                "members": list(self.members), "roles": {str(k): v for k, v in self.roles.items()},
                "created": self.created, "policy": dict(self.policy)}  # fmt: skip

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> _Network:
        return cls(int(r["id"]), str(r["name"]), str(r.get("join_rule", "open")), str(r.get("token", "")),
                   [int(m) for m in r.get("members", [])], {int(k): str(v) for k, v in r.get("roles", {}).items()},
                   float(r.get("created", 0.0)), dict(r.get("policy", {})))  # fmt: skip


@dataclass(frozen=True)
class NodeInfo:
    """A read-only view of one node."""

    node_id: int
    public_key: bytes | None
    listen_addr: str
    hostname: str
    public: bool
    networks: tuple[int, ...]
    live: bool
    owner: str


@dataclass(frozen=True)
class NetworkInfo:
    net_id: int
    name: str
    join_rule: str
    members: tuple[int, ...]
    roles: tuple[tuple[int, str], ...] = ()
    max_members: int = 0


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


def _refuse(code: ErrorCode, rule: str, field: str | None = None, requirement: str | None = None,
            section: str = "3.2") -> RemoteProtocolError:  # fmt: skip
    return RemoteProtocolError(code, rule, field=field, section=section, requirement=requirement)


class Registry:
    """The registry's tables and the rules that change them (see the module docstring)."""

    def __init__(
        self,
        config: RegistryConfig | None = None,
        *,
        now: float = 0.0,
        allocate_node_id: Callable[[], int] | None = None,
    ) -> None:
        self.config = config or RegistryConfig()
        self.profile = self.config.profile
        self._allocate = allocate_node_id
        self._nodes: dict[int, _Node] = {}
        self._by_key: dict[bytes, int] = {}
        self._by_owner: dict[str, int] = {}
        self._by_hostname: dict[str, int] = {}
        self._networks: dict[int, _Network] = {}
        self._trust: dict[int, set[int]] = {}  # a -> {b}: a consented to trust b
        self._inbox: dict[int, list[dict[str, Any]]] = {}  # relayed handshake requests (soft state)
        self._responses: dict[int, list[dict[str, Any]]] = {}
        self._invites: dict[int, list[dict[str, Any]]] = {}  # pending network invites per target node (journaled)
        self.invite_count = 0  # entries in _invites, kept by _apply (the max_invites bound)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._audit: deque[dict[str, Any]] = deque(maxlen=self.config.max_audit)
        self._next_node = 4
        self._next_net = 1
        self._records: list[dict[str, Any]] = []
        self._replies: list[Reply] = []
        self._events: deque[Event] = deque()
        self._next_reap = now + self.config.reap_interval
        self.requests = 0
        self.refused = 0
        self.by_type: Counter[str] = Counter()  # answered requests by type (bounded: known types only)

    # -- the sans-IO surface --------------------------------------------------------------------

    def receive_request(self, msg: Any, source: str | None, now: float, *, tag: object = None) -> None:
        """Handle one decoded request from ``source`` (``"host:port"`` of the TCP peer, or None)."""
        self.requests += 1
        host = _host_of(source) if source else None
        try:
            if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
                raise _refuse(ErrorCode.BAD_VALUE, "a request is a JSON object with a string 'type'", "type",
                              "ARCH-012")  # fmt: skip
            kind = msg["type"]
            if host is not None and not self._allow(host, now):
                raise _refuse(ErrorCode.RATE_LIMITED, f"rate limited: too many requests from {host}",
                              requirement="SEC-024")  # fmt: skip
            if self.config.standby and kind in _WRITES:
                raise _refuse(ErrorCode.INVALID_STATE, "standby mode: write operations not accepted (use primary)",
                              requirement="REPL-008")  # fmt: skip
            handler = _handlers().get(kind)
            if handler is None:
                raise _refuse(ErrorCode.BAD_VALUE, f"unknown message type: {kind!r}", "type")
            staged = _Staged(self)
            reply = handler(staged, msg, host, now)
            staged.commit()
            self.by_type[kind] += 1
            self._replies.append(Reply(tag, reply))
        except RemoteProtocolError as exc:
            self.refused += 1
            self._events.append(InputRejected(exc, "registry", source, 0, _int_or_none(msg, "node_id")))
            body: dict[str, Any] = {"type": "error", "error": exc.rule}
            if self.profile is Profile.DRAFT:
                body["code"] = exc.code.value
            self._replies.append(Reply(tag, body))

    def records_to_persist(self) -> list[dict[str, Any]]:
        out, self._records = self._records, []
        return out

    def replies_to_send(self) -> list[Reply]:
        out, self._replies = self._replies, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        return self._next_reap

    def handle_timer(self, now: float) -> None:
        """Reap live nodes silent for ``stale_after`` seconds: their IDs and keys stay bound, hostnames go."""
        if now < self._next_reap:
            return
        self._next_reap = now + self.config.reap_interval
        cutoff = now - self.config.stale_after
        for node in list(self._nodes.values()):
            if node.live and node.last_seen < cutoff:
                staged = _Staged(self)
                new = replace(node, live=False, hostname="", networks=list(node.networks), lan_addrs=[])
                staged.put_node(new)
                staged.audit(now, "node.reaped", None, node_id=node.node_id)
                staged.commit()
                self._events.append(NodeReaped(node.node_id, now - node.last_seen))

    # -- persistence ----------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """One record holding the whole durable state (what a compacted store file starts with)."""
        return {
            "op": "snapshot", "version": 1, "next_node": self._next_node, "next_net": self._next_net,
            "nodes": [n.record() for n in self._nodes.values()],
            "networks": [n.record() for n in self._networks.values()],
            "trust": sorted([a, b] for a, bs in self._trust.items() for b in bs),
            "invites": {str(t): [dict(inv) for inv in box] for t, box in sorted(self._invites.items())},
            "audit": list(self._audit),
        }  # fmt: skip

    def restore(self, records: Iterable[dict[str, Any]], now: float) -> int:
        """Apply stored records in order (a fresh registry only); returns how many were applied.

        Restored live nodes count as just seen (heartbeats are not journaled).  Under ``draft`` each
        node's replay floor becomes ``now``: a request signed before the restart is not accepted again.
        """
        if self._nodes or self._networks:
            raise LocalProtocolError(ErrorCode.INVALID_STATE, "restore() needs an empty registry")
        count = 0
        for rec in records:
            try:
                self._apply(rec, now)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                why = f"store record {count + 1} ({rec.get('op')!r}) is malformed: {type(exc).__name__}: {exc}"
                raise LocalProtocolError(ErrorCode.BAD_VALUE, why, field="store") from None
            count += 1
        floor = int(now * 1000)
        for node in self._nodes.values():
            node.last_seen = now
            node.last_ts = max(node.last_ts, floor)
        self._next_reap = now + self.config.reap_interval
        return count

    def load_replica(self, snapshot: dict[str, Any], now: float) -> None:
        """A standby takes the primary's whole durable state, invites included (draft 17.2, REPL-003/004);
        soft state (relayed handshakes, rate buckets) is kept."""
        if not self.config.standby:
            raise LocalProtocolError(ErrorCode.INVALID_STATE, "only a standby loads a replica", section="17.2",
                                     requirement="REPL-001")  # fmt: skip
        if snapshot.get("op") != "snapshot":
            raise LocalProtocolError(ErrorCode.BAD_VALUE, "not a registry snapshot", field="snapshot.op")
        fresh = Registry(self.config, now=now)
        try:
            fresh._apply(snapshot, now)  # all or nothing: a malformed snapshot leaves this replica as it was
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LocalProtocolError(ErrorCode.BAD_VALUE, f"malformed snapshot: {type(exc).__name__}: {exc}",
                                     field="snapshot") from None  # fmt: skip
        for nid, node in fresh._nodes.items():
            old = self._nodes.get(nid)
            node.last_seen = old.last_seen if old is not None else now
        self._nodes, self._by_key, self._by_owner = fresh._nodes, fresh._by_key, fresh._by_owner
        self._by_hostname, self._networks, self._trust = fresh._by_hostname, fresh._networks, fresh._trust
        self._audit, self._next_node, self._next_net = fresh._audit, fresh._next_node, fresh._next_net
        self._invites, self.invite_count = fresh._invites, fresh.invite_count

    # -- queries for drivers and tests ----------------------------------------------------------

    def node(self, node_id: int) -> NodeInfo | None:
        n = self._nodes.get(node_id)
        if n is None:
            return None
        return NodeInfo(n.node_id, n.public_key, n.listen_addr, n.hostname, n.public, (0, *n.networks), n.live,
                        n.owner)  # fmt: skip

    def nodes(self, live_only: bool = True) -> list[NodeInfo]:
        return [i for i in (self.node(k) for k in sorted(self._nodes)) if i and (i.live or not live_only)]

    def network(self, net_id: int) -> NetworkInfo | None:
        n = self._networks.get(net_id)
        if n is None:
            return None
        return NetworkInfo(n.net_id, n.name, n.join_rule, tuple(n.members), tuple(sorted(n.roles.items())),
                           int(n.policy.get("max_members", 0)))  # fmt: skip

    def audit_log(self) -> list[dict[str, Any]]:
        """The audit ring buffer, oldest first (ENT-011, ENT-012)."""
        return list(self._audit)

    def trusted(self, a: int, b: int) -> bool:
        """A trust pair: both nodes consented (E-REG-2)."""
        return b in self._trust.get(a, ()) and a in self._trust.get(b, ())

    def shares_network(self, a: int, b: int) -> bool:
        na, nb = self._nodes.get(a), self._nodes.get(b)
        return bool(na and nb and set(na.networks) & set(nb.networks))

    # -- internals ------------------------------------------------------------------------------

    def _allow(self, host: str, now: float) -> bool:
        """Token bucket per source host (SEC-024); the table keeps the ``max_sources`` most recent hosts."""
        cfg = self.config
        if cfg.rate <= 0:
            return True
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= cfg.max_sources:
                self._buckets.popitem(last=False)
            bucket = self._buckets[host] = _Bucket(cfg.burst, now)
        else:
            self._buckets.move_to_end(host)
            bucket.tokens = min(cfg.burst, bucket.tokens + max(0.0, now - bucket.stamp) * cfg.rate)
            bucket.stamp = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _apply(self, rec: dict[str, Any], now: float) -> None:
        """Apply one journal record (live mutations and :meth:`restore` share this)."""
        op = rec.get("op")
        if op == "snapshot":
            self._nodes, self._by_key, self._by_owner, self._by_hostname = {}, {}, {}, {}
            self._networks, self._trust = {}, {}
            for r in rec.get("nodes", []):
                self._set_node(_Node.from_record(r, now))
            for r in rec.get("networks", []):
                net = _Network.from_record(r)
                self._networks[net.net_id] = net
            for a, b in rec.get("trust", []):
                self._trust.setdefault(int(a), set()).add(int(b))
            self._invites, self.invite_count = {}, 0
            for target, box in rec.get("invites", {}).items():  # a store written before invites were kept: none
                for inv in box:
                    self._add_invite(int(target), inv)
            self._audit.clear()
            self._audit.extend(rec.get("audit", []))
            self._next_node = max(self._next_node, int(rec.get("next_node", 4)))
            self._next_net = max(self._next_net, int(rec.get("next_net", 1)))
        elif op == "node":
            self._set_node(_Node.from_record(rec["node"], now))
        elif op == "net":
            net = _Network.from_record(rec["net"])
            self._networks[net.net_id] = net
            self._next_net = max(self._next_net, net.net_id + 1)
        elif op == "net_del":
            net_id = int(rec["id"])
            self._networks.pop(net_id, None)
            for target in list(self._invites):  # an invite to a deleted network goes with it (as Go)
                self._drop_invites(target, {net_id})
        elif op == "invite":
            self._add_invite(int(rec["target"]), rec["invite"])
        elif op == "invite_del":
            self._drop_invites(int(rec["target"]), {int(n) for n in rec["networks"]})
        elif op == "invite_revoke":
            scope = rec.get("network")
            self._revoke_invites(int(rec["inviter"]), None if scope is None else int(scope))
        elif op == "audit":
            self._audit.append(dict(rec["entry"]))
        elif op == "trust":
            a, b = int(rec["a"]), int(rec["b"])
            if rec.get("on"):
                self._trust.setdefault(a, set()).add(b)
            else:
                self._trust.get(a, set()).discard(b)
                if not self._trust.get(a):
                    self._trust.pop(a, None)
        else:
            raise LocalProtocolError(ErrorCode.BAD_VALUE, f"unknown store record {op!r}", field="store.op")

    def _add_invite(self, target: int, inv: dict[str, Any]) -> None:
        """One pending invite for ``target``; one per network (a repeat replaces the older)."""
        entry = {"network_id": int(inv["network_id"]), "inviter_id": int(inv["inviter_id"]),
                 "timestamp": int(inv["timestamp"])}  # fmt: skip
        self._drop_invites(target, {entry["network_id"]})
        self._invites.setdefault(target, []).append(entry)
        self.invite_count += 1

    def _drop_invites(self, target: int, networks: set[int]) -> None:
        """Drop ``target``'s invites to ``networks``."""
        box = self._invites.get(target)
        if box:
            self._keep_invites(target, box, [inv for inv in box if inv["network_id"] not in networks])

    def _revoke_invites(self, inviter: int, network: int | None) -> None:
        """Drop every pending invite ``inviter`` sent (to ``network`` only, when given)."""
        for target, box in list(self._invites.items()):
            self._keep_invites(target, box, [inv for inv in box if not self._sent(inv, inviter, network)])

    @staticmethod
    def _sent(inv: dict[str, Any], inviter: int, network: int | None) -> bool:
        return bool(inv["inviter_id"] == inviter and network in (None, inv["network_id"]))

    def sent_invites(self, inviter: int, network: int | None = None) -> bool:
        """Whether ``inviter`` has a pending invite out (to ``network`` only, when given)."""
        return any(self._sent(inv, inviter, network) for box in self._invites.values() for inv in box)

    def _keep_invites(self, target: int, box: list[dict[str, Any]], rest: list[dict[str, Any]]) -> None:
        if len(rest) == len(box):
            return
        self.invite_count -= len(box) - len(rest)
        if rest:
            self._invites[target] = rest
        else:
            del self._invites[target]

    def _set_node(self, node: _Node) -> None:
        old = self._nodes.get(node.node_id)
        if old is not None:
            if old.hostname and self._by_hostname.get(old.hostname) == old.node_id:
                del self._by_hostname[old.hostname]
            if old.public_key and old.public_key != node.public_key:
                self._by_key.pop(old.public_key, None)
        if old is not None:
            node.last_seen = max(node.last_seen, old.last_seen)
        self._nodes[node.node_id] = node
        if node.public_key:
            self._by_key[node.public_key] = node.node_id
        if node.owner and node.owner not in self._by_owner:
            self._by_owner[node.owner] = node.node_id
        if node.hostname:
            self._by_hostname[node.hostname] = node.node_id
        if node.node_id >= self._next_node:
            self._next_node = node.node_id + 1


class _Staged:
    """Collects one request's changes; nothing touches the registry until :meth:`commit`.

    A handler raises before it stages anything it cannot finish, so a refused request changes nothing.
    """

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.records: list[dict[str, Any]] = []
        self.events: list[Event] = []
        self.last_ts: tuple[int, int] | None = None  # (node ID, timestamp) of a verified draft signature
        self.touch: tuple[int, float] | None = None  # (node ID, now): the node was just seen

    def put_node(self, node: _Node) -> None:
        self.records.append({"op": "node", "node": node.record()})

    def put_net(self, net: _Network) -> None:
        self.records.append({"op": "net", "net": net.record()})

    def trust(self, a: int, b: int, on: bool) -> None:
        self.records.append({"op": "trust", "a": a, "b": b, "on": on})

    def del_net(self, net_id: int) -> None:
        self.records.append({"op": "net_del", "id": net_id})

    def put_invite(self, target: int, network_id: int, inviter_id: int, timestamp: int) -> None:
        inv = {"network_id": network_id, "inviter_id": inviter_id, "timestamp": timestamp}
        self.records.append({"op": "invite", "target": target, "invite": inv})

    def del_invites(self, target: int, networks: Iterable[int]) -> None:
        self.records.append({"op": "invite_del", "target": target, "networks": sorted(set(networks))})

    def revoke_invites(self, inviter: int, network: int | None = None) -> None:
        """Withdraw what ``inviter`` sent (to ``network``, or everywhere) once it may no longer invite (as Go)."""
        if self.reg.sent_invites(inviter, network):
            self.records.append({"op": "invite_revoke", "inviter": inviter, "network": network})

    def audit(self, now: float, action: str, actor: int | None, **details: Any) -> None:
        """One audit entry: time, action, acting node and, for changes, ``old``/``new`` (ENT-011, ENT-012)."""
        entry = {"ts": round(now, 3), "action": action, "actor": actor, **details}
        self.records.append({"op": "audit", "entry": entry})

    def commit(self) -> None:
        reg = self.reg
        for rec in self.records:
            if rec["op"] == "node" and self.last_ts is not None and rec["node"]["id"] == self.last_ts[0]:
                rec["node"]["last_ts"] = max(rec["node"]["last_ts"], self.last_ts[1])
            reg._apply(rec, 0.0)
        if self.last_ts is not None and (node := reg._nodes.get(self.last_ts[0])) is not None:
            node.last_ts = max(node.last_ts, self.last_ts[1])
        if self.touch is not None and (node := reg._nodes.get(self.touch[0])) is not None:
            node.last_seen = self.touch[1]
        reg._records.extend(self.records)
        reg._events.extend(self.events)


def _host_of(source: str) -> str:
    host, sep, _ = source.rpartition(":")
    return host.strip("[]") if sep else source


def _int_or_none(msg: Any, key: str) -> int | None:
    v = msg.get(key) if isinstance(msg, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _handlers() -> dict[str, Any]:
    """Request type -> rule (imported on first use: the rule modules build on this one)."""
    global _HANDLER_TABLE
    if _HANDLER_TABLE is None:
        from pilot_proto.registry.networks import NETWORK_HANDLERS
        from pilot_proto.registry.rules import NODE_HANDLERS

        _HANDLER_TABLE = {**NODE_HANDLERS, **NETWORK_HANDLERS}
    return _HANDLER_TABLE


_HANDLER_TABLE: dict[str, Any] | None = None

"""The registry as a sans-IO state machine (draft 3.2, 10.1, 10.6-10.8, 17, 19.3; wire-notes 1.22).

:class:`Registry` answers the reference registry's JSON requests -- ``register``, ``lookup``,
``resolve``, ``heartbeat``, ``deregister``, ``set_hostname``, ``resolve_hostname``,
``set_visibility``, ``report_trust``, ``revoke_trust``, ``check_trust``, the relayed handshake trio
(``request_handshake``, ``poll_handshakes``, ``respond_handshake``), ``punch`` and the network calls
(``create_network``, ``join_network``, ``leave_network``, ``list_networks``, ``list_nodes``) -- and
nothing else: it opens no socket, reads no clock and draws no randomness.

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
are never assigned (E-REG-5); ``punch`` reveals endpoints only as ``resolve`` would (E-REG-6).  Every
table is bounded by :class:`RegistryConfig`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pilot_proto.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.registry.challenges import base_challenge, timestamped
from pilot_proto.sansio import Event, InputRejected
from pilot_proto.wire.address import Addr

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

    def record(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "public_key": base64.b64encode(self.public_key).decode() if self.public_key else "",
            "listen_addr": self.listen_addr, "owner": self.owner, "hostname": self.hostname,
            "public": self.public, "networks": list(self.networks), "lan_addrs": list(self.lan_addrs),
            "live": self.live, "key_created": self.key_created, "last_ts": self.last_ts,
        }  # fmt: skip

    @classmethod
    def from_record(cls, r: dict[str, Any], now: float) -> _Node:
        key = base64.b64decode(r["public_key"]) if r.get("public_key") else None
        return cls(int(r["id"]), key, str(r["listen_addr"]), str(r.get("owner", "")), str(r.get("hostname", "")),
                   bool(r.get("public")), [int(n) for n in r.get("networks", [])],
                   [str(a) for a in r.get("lan_addrs", [])], bool(r.get("live", True)),
                   float(r.get("key_created", 0.0)), int(r.get("last_ts", 0)), now)  # fmt: skip


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
            handler = _HANDLERS.get(kind)
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
        """A standby takes the primary's whole state (draft 17.2, REPL-003/004); soft state is kept."""
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
            self._networks.pop(int(rec["id"]), None)
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


# -- validation helpers -------------------------------------------------------------------------


def _host_of(source: str) -> str:
    host, sep, _ = source.rpartition(":")
    return host.strip("[]") if sep else source


def _int_or_none(msg: Any, key: str) -> int | None:
    v = msg.get(key) if isinstance(msg, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _uint(msg: dict[str, Any], key: str, bits: int = 32, *, required: bool = True, default: int = 0) -> int:
    v = msg.get(key)
    if v is None and not required:
        return default
    # Go decodes numbers as float64; an integral float is the same number.
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < (1 << bits):
        raise _refuse(ErrorCode.BAD_VALUE, f"{key} required: an integer from 0 to {(1 << bits) - 1}", key,
                      "ARCH-012")  # fmt: skip
    return v


def _str(msg: dict[str, Any], key: str, limit: int = 1024, *, required: bool = False) -> str:
    v = msg.get(key, "")
    if v is None:
        v = ""
    if not isinstance(v, str):
        raise _refuse(ErrorCode.BAD_VALUE, f"{key} must be a string", key)
    if required and not v:
        raise _refuse(ErrorCode.BAD_VALUE, f"{key} required", key)
    if len(v) > limit:
        raise _refuse(ErrorCode.TOO_LARGE, f"{key} too long (max {limit} chars)", key)
    return v


def _hostname_error(name: str) -> str | None:
    if len(name) > 63:
        return "hostname too long (max 63 chars)"
    if not _HOSTNAME.match(name):
        return "hostname invalid: lowercase letters, digits and hyphens, starting and ending with a letter or digit"
    if name in _RESERVED_HOSTNAMES:
        return f"hostname {name!r} is reserved"
    return None


def _b64(text: str, size: int, what: str) -> bytes:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(ErrorCode.BAD_ENCODING, f"invalid {what} encoding (base64 expected)", what) from None
    if len(raw) != size:
        raise _refuse(ErrorCode.BAD_VALUE, f"invalid {what} size: {len(raw)} bytes (need {size})", what)
    return raw


def _listen_addr(msg: dict[str, Any], source_host: str | None) -> str:
    """The endpoint to publish: the TCP peer's host with the port the node names (as Go's sanitizeListenAddr)."""
    text = _str(msg, "listen_addr", 300, required=True)
    _, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise _refuse(ErrorCode.BAD_VALUE, f"invalid listen_addr {text!r}: HOST:PORT with a port 1-65535",
                      "listen_addr")  # fmt: skip
    if source_host is None:
        return text
    return f"[{source_host}]:{port}" if ":" in source_host else f"{source_host}:{port}"


def _addr(node_id: int, network: int = 0) -> str:
    return str(Addr(network, node_id))


# -- handlers -----------------------------------------------------------------------------------

Handler = Callable[[_Staged, dict[str, Any], "str | None", float], dict[str, Any]]


def _admin_ok(reg: Registry, msg: dict[str, Any]) -> bool:
    """Constant-time admin token check (CONS-005); no token configured means none is valid."""
    token = msg.get("admin_token")
    want = reg.config.admin_token
    return bool(want) and isinstance(token, str) and hmac.compare_digest(token.encode(), want.encode())


def _live(reg: Registry, node_id: int) -> _Node:
    node = reg._nodes.get(node_id)
    if node is None or not node.live:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"node {node_id} not found", "node_id")
    return node


def _verify(st: _Staged, node: _Node, msg: dict[str, Any], now: float, *, admin_ok: bool = True) -> None:
    """A write by ``node``: its Ed25519 signature, or the admin token (CONS-004, CONS-006, E-REG-3)."""
    reg = st.reg
    if admin_ok and _admin_ok(reg, msg):
        return
    if node.public_key is None:
        raise _refuse(ErrorCode.AUTH_REQUIRED, "node has no public key: a valid admin token is required",
                      "admin_token", "CONS-006", "19.3")  # fmt: skip
    sig_text = msg.get("signature")
    if not isinstance(sig_text, str) or not sig_text:
        raise _refuse(ErrorCode.AUTH_REQUIRED, "signature required for authenticated node", "signature",
                      "CONS-004", "19.3")  # fmt: skip
    sig = _b64(sig_text, 64, "signature")
    challenge = base_challenge(msg)
    if reg.profile is Profile.DRAFT:
        ts = _timestamp(reg, node, msg, now)
        challenge = timestamped(challenge, ts, msg)
        st.last_ts = (node.node_id, ts)
    try:
        Ed25519PublicKey.from_public_bytes(node.public_key).verify(sig, challenge.encode())
    except (InvalidSignature, ValueError):
        raise _refuse(ErrorCode.BAD_SIGNATURE, "signature verification failed", "signature", "CONS-004",
                      "19.3") from None  # fmt: skip


def _timestamp(reg: Registry, node: _Node, msg: dict[str, Any], now: float) -> int:
    ts = msg.get("timestamp")
    if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
        raise _refuse(ErrorCode.AUTH_REQUIRED, "timestamp required (POSIX milliseconds) in a signed request",
                      "timestamp", "CONS-004", "19.3")  # fmt: skip
    if abs(ts / 1000.0 - now) > reg.config.signature_window:
        raise _refuse(ErrorCode.TOO_OLD, f"timestamp {ts} is more than {reg.config.signature_window:.0f} s "
                      "from the registry's clock", "timestamp", "CONS-004", "19.3")  # fmt: skip
    if ts <= node.last_ts:
        raise _refuse(ErrorCode.REPLAY, f"timestamp {ts} is not newer than the last one accepted from node "
                      f"{node.node_id}", "timestamp", "CONS-004", "19.3")  # fmt: skip
    return ts


def _register(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    listen = _listen_addr(msg, host)
    owner = _str(msg, "owner", 256)
    hostname = _str(msg, "hostname", 256)
    lan = msg.get("lan_addrs") or []
    if not isinstance(lan, list) or not all(isinstance(a, str) and len(a) <= 64 for a in lan):
        raise _refuse(ErrorCode.BAD_VALUE, "lan_addrs must be a list of HOST:PORT strings", "lan_addrs")
    lan = [a for a in lan if a][: reg.config.max_lan_addrs]
    key_text = _str(msg, "public_key", 100)
    key = _b64(key_text, 32, "public_key") if key_text else None
    if key is None and not _admin_ok(reg, msg):
        raise _refuse(ErrorCode.AUTH_REQUIRED, "registration requires public_key (or a valid admin token)",
                      "public_key", "CONS-006", "19.3")  # fmt: skip
    existing = reg._nodes.get(reg._by_key[key]) if key is not None and key in reg._by_key else None
    if key is not None and reg.profile is Profile.DRAFT:
        # Proof of possession: the registration is signed by the key it registers (E-REG-3).
        if not msg.get("signature"):
            raise _refuse(ErrorCode.AUTH_REQUIRED, "registration must be signed by the key it registers (draft "
                          "profile; a Go daemon needs a go-interop registry)", "signature", "CONS-004",
                          "19.3")  # fmt: skip
        probe = existing or _Node(0, key, listen)
        _verify(st, probe, msg, now, admin_ok=False)
    if existing is not None:
        node = replace(existing, listen_addr=listen, lan_addrs=lan, live=True, networks=list(existing.networks))
        new = False
    else:
        if len(reg._nodes) >= reg.config.max_nodes:
            raise _refuse(ErrorCode.TABLE_FULL, f"registry full ({reg.config.max_nodes} nodes)", "node_id")
        node = _Node(_new_node_id(reg), key, listen, key_created=now)
        new = True
    owner_holder = reg._by_owner.get(owner) if owner else None
    if owner and not node.owner and owner_holder in (None, node.node_id):
        node.owner = owner
    if st.last_ts is not None:
        st.last_ts = (node.node_id, st.last_ts[1])  # the probe had no ID yet
    reply: dict[str, Any] = {"type": "register_ok", "node_id": node.node_id, "network_id": 0,
                             "address": _addr(node.node_id), "public_key": key_text,
                             "observed_addr": listen, "protocol_version": PROTOCOL_VERSION}  # fmt: skip
    if owner_holder not in (None, node.node_id):
        # An owner name never moves a node ID to another key (E-REG-1): this key keeps its own ID.
        reply["owner_error"] = f"owner already bound to node {owner_holder}; use rotate_key from that node's key"
    if hostname:
        err = _hostname_error(hostname)
        holder = reg._by_hostname.get(hostname)
        if err is None and holder is not None and holder != node.node_id:
            err = f"hostname {hostname!r} already in use by node {holder}"
        if err is None:
            node.hostname = hostname
            reply["hostname"] = hostname
        else:
            reply["hostname_error"] = err
    st.put_node(node)
    if new or existing is None or not existing.live:
        st.audit(now, "node.registered" if new else "node.re_registered", node.node_id, listen_addr=listen)
    st.touch = (node.node_id, now)
    st.events.append(NodeRegistered(node.node_id, listen, new))
    return reply


def _new_node_id(reg: Registry) -> int:
    if reg._allocate is not None:
        nid = reg._allocate()
        if nid in RESERVED_NODE_IDS or nid in reg._nodes or not 0 <= nid < 1 << 32:
            raise LocalProtocolError(ErrorCode.BAD_VALUE, f"allocator returned unusable node ID {nid}",
                                     field="node_id", section="4.4", requirement="ADDR-012")  # fmt: skip
        return nid
    nid = reg._next_node
    while nid in RESERVED_NODE_IDS or nid in reg._nodes:
        nid += 1
        if nid >= 1 << 32:
            raise _refuse(ErrorCode.TABLE_FULL, "node ID space exhausted", "node_id")
    reg._next_node = nid + 1
    return nid


def _lookup(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    node = _live(st.reg, _uint(msg, "node_id"))
    reply: dict[str, Any] = {
        "type": "lookup_ok", "node_id": node.node_id, "address": _addr(node.node_id),
        "networks": [0, *node.networks],
        "public_key": base64.b64encode(node.public_key).decode() if node.public_key else "",
        "public": node.public, "polo_score": 0,
    }  # fmt: skip
    if node.hostname:
        reply["hostname"] = node.hostname
    if node.public:
        reply["real_addr"] = node.listen_addr  # SEC-021: only for nodes that opted in
    return reply


def _may_see(reg: Registry, requester: int, node: _Node) -> bool:
    """Draft 10.7 (SEC-022): public, a mutual trust pair, or a shared non-backbone network."""
    return node.public or requester == node.node_id or reg.trusted(requester, node.node_id) or \
        reg.shares_network(requester, node.node_id)  # fmt: skip


def _resolve(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    target_id, requester_id = _uint(msg, "node_id"), _uint(msg, "requester_id")
    requester = reg._nodes.get(requester_id)
    if requester is None or not requester.live:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"resolve denied: requester node {requester_id} is not registered",
                      "requester_id", "SEC-022", "10.7")  # fmt: skip
    _verify(st, requester, msg, now)
    node = _live(reg, target_id)
    if not _may_see(reg, requester_id, node):
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"resolve denied: node {target_id} is private (establish mutual "
                      "trust first)", "node_id", "SEC-022", "10.7")  # fmt: skip
    reply: dict[str, Any] = {"type": "resolve_ok", "node_id": node.node_id, "real_addr": node.listen_addr,
                             "key_age_days": max(0, int((now - node.key_created) // 86400))}  # fmt: skip
    if node.lan_addrs:
        reply["lan_addrs"] = list(node.lan_addrs)
    return reply


def _heartbeat(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    node = _live(st.reg, _uint(msg, "node_id"))
    _verify(st, node, msg, now, admin_ok=False)
    node.last_seen = now  # soft state: not journaled
    return {"type": "heartbeat_ok", "time": int(now)}


def _deregister(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    nid = _uint(msg, "node_id")
    node = reg._nodes.get(nid)
    if node is None or not node.live:
        return {"type": "deregister_ok"}  # idempotent, as Go
    _verify(st, node, msg, now)
    for net_id in node.networks:
        net = reg._networks.get(net_id)
        if net is not None:
            st.put_net(replace(net, members=[m for m in net.members if m != nid],
                               roles={k: v for k, v in net.roles.items() if k != nid}))  # fmt: skip
    st.put_node(replace(node, live=False, hostname="", networks=[], lan_addrs=[]))
    st.audit(now, "node.deregistered", nid, networks=list(node.networks))
    st.events.append(NodeDeregistered(nid))
    return {"type": "deregister_ok"}


def _set_hostname(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    node = _live(reg, _uint(msg, "node_id"))
    name = _str(msg, "hostname", 256)
    if name:
        err = _hostname_error(name)
        if err:
            raise _refuse(ErrorCode.BAD_VALUE, f"invalid hostname: {err}", "hostname")
    _verify(st, node, msg, now)
    holder = reg._by_hostname.get(name) if name else None
    if holder is not None and holder != node.node_id:
        raise _refuse(ErrorCode.INVALID_STATE, f"hostname {name!r} already in use by node {holder}", "hostname")
    st.put_node(replace(node, hostname=name, networks=list(node.networks)))
    st.audit(now, "hostname.changed", node.node_id, old=node.hostname, new=name)
    return {"type": "set_hostname_ok", "node_id": node.node_id, "hostname": name}


def _resolve_hostname(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    name = _str(msg, "hostname", 256, required=True)
    nid = reg._by_hostname.get(name)
    node = reg._nodes.get(nid) if nid is not None else None
    if node is None or not node.live:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"hostname {name!r} not found", "hostname")
    if not node.public:
        requester_id = _uint(msg, "requester_id", required=False)
        requester = reg._nodes.get(requester_id)
        allowed = requester is not None and requester.live and _may_see(reg, requester_id, node)
        if allowed and reg.profile is Profile.DRAFT and requester_id != node.node_id:
            assert requester is not None
            _verify(st, requester, msg, now)  # draft: the requester proves who it is (E-REG-7)
        if not allowed:
            # The same answer as for a name nobody holds, so names cannot be enumerated.
            raise _refuse(ErrorCode.UNKNOWN_PEER, f"hostname {name!r} not found", "hostname", "SEC-022", "10.7")
    return {"type": "resolve_hostname_ok", "node_id": node.node_id, "address": _addr(node.node_id),
            "public": node.public, "hostname": node.hostname}  # fmt: skip


def _set_visibility(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    node = _live(st.reg, _uint(msg, "node_id"))
    public = msg.get("public")
    if not isinstance(public, bool):
        raise _refuse(ErrorCode.BAD_VALUE, "public required: true or false", "public")
    _verify(st, node, msg, now)
    st.put_node(replace(node, public=public, networks=list(node.networks)))
    st.audit(now, "visibility.changed", node.node_id, old=node.public, new=public)
    return {"type": "set_visibility_ok", "node_id": node.node_id, "visibility": "public" if public else "private"}


def _consent(st: _Staged, a: int, b: int, now: float) -> None:
    """Record that ``a`` trusts ``b`` (bounded per node); a pair forms when ``b`` consents too."""
    reg = st.reg
    mine = reg._trust.get(a, set())
    if b in mine:
        return
    if len(mine) >= reg.config.max_trust_per_node:
        raise _refuse(ErrorCode.TABLE_FULL, f"too many trust reports from node {a} "
                      f"(max {reg.config.max_trust_per_node})", "peer_id")  # fmt: skip
    st.trust(a, b, True)
    st.audit(now, "trust.consented", a, peer=b)
    if a in reg._trust.get(b, ()):
        st.audit(now, "trust.created", a, node_a=min(a, b), node_b=max(a, b))
        st.events.append(TrustChanged(min(a, b), max(a, b), True))


def _two(reg: Registry, msg: dict[str, Any], a_key: str, b_key: str) -> tuple[_Node, int]:
    a = _live(reg, _uint(msg, a_key))
    b = _uint(msg, b_key)
    _live(reg, b)
    if b == a.node_id:
        raise _refuse(ErrorCode.BAD_VALUE, "a node cannot trust itself", b_key)
    return a, b


def _report_trust(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    a, b = _two(st.reg, msg, "node_id", "peer_id")
    _verify(st, a, msg, now, admin_ok=False)
    _consent(st, a.node_id, b, now)
    return {"type": "report_trust_ok", "trusted": a.node_id in st.reg._trust.get(b, ())}


def _revoke_trust(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    a = _live(reg, _uint(msg, "node_id"))
    b = _uint(msg, "peer_id")
    _verify(st, a, msg, now, admin_ok=False)
    mine, theirs = b in reg._trust.get(a.node_id, ()), a.node_id in reg._trust.get(b, ())
    if not mine and not theirs:
        raise _refuse(ErrorCode.INVALID_STATE, f"no trust pair between {a.node_id} and {b}", "peer_id")
    # One side's revocation ends the pair at once (draft 10.6, SEC-019).
    if mine:
        st.trust(a.node_id, b, False)
    if theirs:
        st.trust(b, a.node_id, False)
    st.audit(now, "trust.revoked", a.node_id, peer=b, was_pair=mine and theirs)
    if mine and theirs:
        st.events.append(TrustChanged(min(a.node_id, b), max(a.node_id, b), False))
    return {"type": "revoke_trust_ok"}


def _check_trust(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    a, b = _uint(msg, "node_id"), _uint(msg, "peer_id")
    return {"type": "check_trust_ok", "trusted": reg.trusted(a, b) or reg.shares_network(a, b)}


def _request_handshake(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    a, b = _two(reg, msg, "from_node_id", "to_node_id")
    justification = _str(msg, "justification", 1024)
    _verify(st, a, msg, now, admin_ok=False)  # SEC-020: signed over handshake:<from>:<to>
    inbox = reg._inbox.setdefault(b, [])
    if any(r["from_node_id"] == a.node_id for r in inbox):
        raise _refuse(ErrorCode.INVALID_STATE, f"handshake request already pending from node {a.node_id}",
                      "from_node_id")  # fmt: skip
    if len(inbox) >= reg.config.max_handshake_inbox:
        raise _refuse(ErrorCode.TABLE_FULL, f"handshake inbox full for node {b}", "to_node_id")
    _consent(st, a.node_id, b, now)  # asking for trust is consenting to it
    inbox.append({"from_node_id": a.node_id, "justification": justification, "timestamp": int(now)})
    return {"type": "request_handshake_ok", "status": "delivered"}


def _poll_handshakes(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    node = _live(reg, _uint(msg, "node_id"))
    _verify(st, node, msg, now, admin_ok=False)
    requests = reg._inbox.pop(node.node_id, [])
    responses = reg._responses.pop(node.node_id, [])
    return {"type": "poll_handshakes_ok", "requests": requests, "responses": responses}


def _respond_handshake(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    node, peer = _two(reg, msg, "node_id", "peer_id")
    accept = msg.get("accept")
    if not isinstance(accept, bool):
        raise _refuse(ErrorCode.BAD_VALUE, "accept required: true or false", "accept")
    _verify(st, node, msg, now, admin_ok=False)  # signed over respond:<node>:<peer> (E-TRUST-1)
    box = reg._responses.setdefault(peer, [])
    if len(box) >= reg.config.max_handshake_inbox:
        raise _refuse(ErrorCode.TABLE_FULL, f"handshake response inbox full for node {peer}", "peer_id")
    if accept:
        _consent(st, node.node_id, peer, now)
    box.append({"from_node_id": node.node_id, "accept": accept, "timestamp": int(now)})
    return {"type": "respond_handshake_ok", "accept": accept, "peer_id": peer}


def _punch(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    rid, a_id, b_id = _uint(msg, "requester_id"), _uint(msg, "node_a"), _uint(msg, "node_b")
    requester = _live(reg, rid)
    if rid not in (a_id, b_id):
        raise _refuse(ErrorCode.BAD_VALUE, "punch denied: requester must be participant", "requester_id")
    _verify(st, requester, msg, now, admin_ok=False)
    a, b = _live(reg, a_id), _live(reg, b_id)
    other = b if rid == a_id else a
    if not _may_see(reg, rid, other):
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"punch denied: node {other.node_id} is private", "node_b", "SEC-022",
                      "10.7")  # fmt: skip
    return {"type": "punch_ok", "node_a": a_id, "node_a_addr": a.listen_addr, "node_b": b_id,
            "node_b_addr": b.listen_addr}  # fmt: skip


def _create_network(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    if not _admin_ok(reg, msg):
        raise _refuse(ErrorCode.AUTH_REQUIRED, "network creation needs a valid admin token", "admin_token",
                      "CONS-004", "19.3")  # fmt: skip
    creator = _live(reg, _uint(msg, "node_id"))
    name = _str(msg, "name", 63, required=True)
    if not _HOSTNAME.match(name) or name in _RESERVED_NETWORKS:
        raise _refuse(ErrorCode.BAD_VALUE, f"invalid network name {name!r}", "name")
    rule = _str(msg, "join_rule", 16) or "open"
    if rule not in ("open", "token"):
        raise _refuse(ErrorCode.BAD_VALUE, f"join_rule {rule!r} not supported (open or token)", "join_rule")
    token = _str(msg, "token", 256)
    if rule == "token" and not token:
        raise _refuse(ErrorCode.BAD_VALUE, "a token network needs a token", "token")
    if any(n.name == name for n in reg._networks.values()):
        raise _refuse(ErrorCode.INVALID_STATE, f"network {name!r} already exists", "name")
    if len(reg._networks) >= reg.config.max_networks or reg._next_net >= 0xFFFF:
        raise _refuse(ErrorCode.TABLE_FULL, "network table full", "network_id")
    net = _Network(reg._next_net, name, rule, token, [creator.node_id], {creator.node_id: "owner"}, now)
    st.put_net(net)
    st.put_node(replace(creator, networks=[*creator.networks, net.net_id]))
    st.audit(now, "network.created", creator.node_id, network_id=net.net_id, name=name, join_rule=rule)
    return {"type": "create_network_ok", "network_id": net.net_id, "name": name, "enterprise": False}


def _membership(st: _Staged, msg: dict[str, Any], now: float) -> tuple[_Node, _Network]:
    reg = st.reg
    node = _live(reg, _uint(msg, "node_id"))
    net_id = _uint(msg, "network_id", 16)
    if net_id == 0:
        raise _refuse(ErrorCode.BAD_VALUE, "cannot join or leave the backbone network", "network_id")
    _verify(st, node, msg, now)
    net = reg._networks.get(net_id)
    if net is None:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"network {net_id} not found", "network_id")
    return node, net


def _join_network(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    node, net = _membership(st, msg, now)
    if net.join_rule == "token":
        token = _str(msg, "token", 256)
        if not hmac.compare_digest(token.encode(), net.token.encode()):
            raise _refuse(ErrorCode.AUTH_REQUIRED, f"invalid token for network {net.net_id}", "token")
    if net.net_id in node.networks:
        raise _refuse(ErrorCode.INVALID_STATE, f"node {node.node_id} already in network {net.net_id}", "network_id")
    limit = int(net.policy.get("max_members", 0)) or st.reg.config.max_members
    if len(net.members) >= min(limit, st.reg.config.max_members):
        raise _refuse(ErrorCode.TABLE_FULL, "network membership limit reached", "network_id", "ENT-008", "18.2")
    st.put_net(replace(net, members=[*net.members, node.node_id], roles={**net.roles, node.node_id: "member"}))
    st.put_node(replace(node, networks=[*node.networks, net.net_id]))
    st.audit(now, "network.joined", node.node_id, network_id=net.net_id)
    return {"type": "join_network_ok", "network_id": net.net_id, "address": _addr(node.node_id, net.net_id)}


def _leave_network(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    node, net = _membership(st, msg, now)
    if net.net_id not in node.networks:
        raise _refuse(ErrorCode.INVALID_STATE, f"node {node.node_id} is not a member of network {net.net_id}",
                      "network_id")  # fmt: skip
    if net.roles.get(node.node_id) == "owner" and len(net.members) > 1:
        raise _refuse(ErrorCode.INVALID_STATE, "cannot leave network: the owner must transfer ownership first",
                      "network_id", "ENT-002", "18.1")  # fmt: skip
    st.put_net(replace(net, members=[m for m in net.members if m != node.node_id],
                       roles={k: v for k, v in net.roles.items() if k != node.node_id}))  # fmt: skip
    st.put_node(replace(node, networks=[n for n in node.networks if n != net.net_id]))
    st.audit(now, "network.left", node.node_id, network_id=net.net_id)
    return {"type": "leave_network_ok", "network_id": net.net_id}


_RANK = {"member": 1, "admin": 2, "owner": 3}


def _net_and_actor(st: _Staged, msg: dict[str, Any], now: float, minimum: str) -> tuple[_Network, int | None]:
    """The network and the acting node, which must hold at least ``minimum`` there (ENT-005) or be the admin."""
    reg = st.reg
    net_id = _uint(msg, "network_id", 16)
    if net_id == 0:
        raise _refuse(ErrorCode.BAD_VALUE, "the backbone network has no roles", "network_id", "ENT-005", "18.1")
    net = reg._networks.get(net_id)
    if net is None:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"network {net_id} not found", "network_id")
    if _admin_ok(reg, msg):
        return net, None
    actor = _live(reg, _uint(msg, "node_id"))
    _verify(st, actor, msg, now, admin_ok=False)
    role = net.roles.get(actor.node_id)
    if role is None or _RANK[role] < _RANK[minimum]:
        raise _refuse(ErrorCode.AUTH_REQUIRED, f"rbac: node {actor.node_id} has role {role or 'none'} in network "
                      f"{net_id}; this needs {minimum}", "node_id", "ENT-005", "18.1")  # fmt: skip
    return net, actor.node_id


def _member(reg: Registry, net: _Network, msg: dict[str, Any], key: str) -> int:
    target = _uint(msg, key)
    if target not in net.members:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"node {target} is not a member of network {net.net_id}", key)
    return target


def _promote(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    # Draft 18.1: admins may promote and demote.  Go lets only the owner (E-REG-10).
    need = "owner" if st.reg.profile is Profile.GO_INTEROP else "admin"
    net, actor = _net_and_actor(st, msg, now, need)
    target = _member(st.reg, net, msg, "target_node_id")
    role = net.roles.get(target, "member")
    if role != "member":
        raise _refuse(ErrorCode.INVALID_STATE, f"cannot promote node {target}: it is already {role}", "target_node_id")
    st.put_net(replace(net, roles={**net.roles, target: "admin"}))
    st.audit(now, "member.promoted", actor, network_id=net.net_id, target=target, old=role, new="admin")
    return {"type": "promote_member_ok", "network_id": net.net_id, "target_node_id": target, "role": "admin"}


def _demote(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    need = "owner" if st.reg.profile is Profile.GO_INTEROP else "admin"
    net, actor = _net_and_actor(st, msg, now, need)
    target = _member(st.reg, net, msg, "target_node_id")
    role = net.roles.get(target, "member")
    if role != "admin":
        raise _refuse(ErrorCode.INVALID_STATE, f"cannot demote node {target}: it is {role}", "target_node_id")
    st.put_net(replace(net, roles={**net.roles, target: "member"}))
    st.audit(now, "member.demoted", actor, network_id=net.net_id, target=target, old=role, new="member")
    return {"type": "demote_member_ok", "network_id": net.net_id, "target_node_id": target, "role": "member"}


def _kick(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    net, actor = _net_and_actor(st, msg, now, "admin")
    target = _member(reg, net, msg, "target_node_id")
    if net.roles.get(target) == "owner":
        raise _refuse(ErrorCode.INVALID_STATE, "cannot kick the network owner", "target_node_id", "ENT-002", "18.1")
    st.put_net(replace(net, members=[m for m in net.members if m != target],
                       roles={k: v for k, v in net.roles.items() if k != target}))  # fmt: skip
    node = reg._nodes.get(target)
    if node is not None:
        st.put_node(replace(node, networks=[n for n in node.networks if n != net.net_id]))
    st.audit(now, "member.kicked", actor, network_id=net.net_id, target=target)
    return {"type": "kick_member_ok", "network_id": net.net_id, "target_node_id": target}


def _transfer(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    net, actor = _net_and_actor(st, msg, now, "owner")
    target = _member(st.reg, net, msg, "new_owner_id")
    owners = [m for m, r in net.roles.items() if r == "owner"]
    if target in owners:
        raise _refuse(ErrorCode.INVALID_STATE, f"node {target} is already the owner", "new_owner_id")
    roles = {**net.roles, **dict.fromkeys(owners, "admin"), target: "owner"}
    st.put_net(replace(net, roles=roles))
    st.audit(now, "network.ownership_transferred", actor, network_id=net.net_id, old=owners, new=target)
    return {"type": "transfer_ownership_ok", "network_id": net.net_id, "new_owner_id": target}


def _delete_network(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    net, actor = _net_and_actor(st, msg, now, "owner")
    for m in net.members:
        node = reg._nodes.get(m)
        if node is not None:
            st.put_node(replace(node, networks=[n for n in node.networks if n != net.net_id]))
    st.del_net(net.net_id)
    st.audit(now, "network.deleted", actor, network_id=net.net_id, name=net.name, members=len(net.members))
    return {"type": "delete_network_ok", "network_id": net.net_id}


def _set_policy(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    net, actor = _net_and_actor(st, msg, now, "admin")
    policy = dict(net.policy)
    if "max_members" in msg:
        limit = _uint(msg, "max_members", 17)
        if limit > st.reg.config.max_members:
            raise _refuse(ErrorCode.OUT_OF_RANGE, f"max_members above {st.reg.config.max_members}", "max_members")
        if limit and limit < len(net.members):
            raise _refuse(ErrorCode.INVALID_STATE, f"cannot set max_members to {limit}: network already has "
                          f"{len(net.members)} members", "max_members", "ENT-008", "18.2")  # fmt: skip
        policy["max_members"] = limit
    if "allowed_ports" in msg:
        ports = msg["allowed_ports"]
        if (
            not isinstance(ports, list)
            or len(ports) > 100
            or not all(isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports)
        ):
            raise _refuse(ErrorCode.BAD_VALUE, "allowed_ports: at most 100 port numbers from 1 to 65535",
                          "allowed_ports", "ENT-009", "18.2")  # fmt: skip
        policy["allowed_ports"] = sorted(set(ports))
    if "description" in msg:
        policy["description"] = _str(msg, "description", 256)
    st.put_net(replace(net, policy=policy))
    st.audit(now, "policy.changed", actor, network_id=net.net_id, old=dict(net.policy), new=policy)
    return {"type": "set_network_policy_ok", "network_id": net.net_id, **_policy_view(policy)}


def _policy_view(policy: dict[str, Any]) -> dict[str, Any]:
    return {"max_members": int(policy.get("max_members", 0)), "allowed_ports": list(policy.get("allowed_ports", [])),
            "description": str(policy.get("description", ""))}  # fmt: skip


def _get_policy(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    net = st.reg._networks.get(_uint(msg, "network_id", 16))
    if net is None:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"network {msg.get('network_id')} not found", "network_id")
    return {"type": "get_network_policy_ok", "network_id": net.net_id, **_policy_view(net.policy)}


def _get_role(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    net = st.reg._networks.get(_uint(msg, "network_id", 16))
    if net is None:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"network {msg.get('network_id')} not found", "network_id")
    target = _member(st.reg, net, msg, "target_node_id")
    return {"type": "get_member_role_ok", "network_id": net.net_id, "target_node_id": target,
            "role": net.roles.get(target, "member")}  # fmt: skip


def _get_audit_log(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    if not _admin_ok(st.reg, msg):
        raise _refuse(ErrorCode.AUTH_REQUIRED, "the audit log needs a valid admin token", "admin_token", "CONS-004",
                      "19.3")  # fmt: skip
    net_id = _uint(msg, "network_id", 16, required=False)
    entries = [e for e in st.reg._audit if not net_id or e.get("network_id") == net_id]
    limit = _uint(msg, "limit", 16, required=False, default=100) or 100
    return {"type": "get_audit_log_ok", "entries": entries[-limit:], "total": len(entries)}


def _list_networks(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    live = sum(1 for n in reg._nodes.values() if n.live)
    nets = [{"id": 0, "name": "backbone", "members": live, "join_rule": "open", "enterprise": False, "created": 0}]
    nets += [{"id": n.net_id, "name": n.name, "members": len(n.members), "join_rule": n.join_rule,
              "enterprise": False, "created": int(n.created)} for n in reg._networks.values()]  # fmt: skip
    return {"type": "list_networks_ok", "networks": nets}


def _list_nodes(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    net_id = _uint(msg, "network_id", 16, required=False)
    if net_id == 0:
        if not _admin_ok(reg, msg):
            raise _refuse(ErrorCode.AUTH_REQUIRED, "listing backbone nodes is not permitted (use lookup with a "
                          "specific node_id)", "network_id", "SEC-023", "10.7")  # fmt: skip
        members = [n.node_id for n in reg._nodes.values() if n.live]
        roles: dict[int, str] = {}
    else:
        net = reg._networks.get(net_id)
        if net is None:
            raise _refuse(ErrorCode.UNKNOWN_PEER, f"network {net_id} not found", "network_id")
        members, roles = net.members, net.roles
    out = []
    for nid in members:
        node = reg._nodes.get(nid)
        entry: dict[str, Any] = {"node_id": nid, "address": _addr(nid, net_id)}
        if node is None or not node.live:
            entry["offline"] = True
        else:
            entry.update(public=node.public, polo_score=0)
            if node.hostname:
                entry["hostname"] = node.hostname
            if node.public:
                entry["real_addr"] = node.listen_addr
        if nid in roles:
            entry["role"] = roles[nid]
        out.append(entry)
    return {"type": "list_nodes_ok", "nodes": out}


_HANDLERS: dict[str, Handler] = {
    "register": _register, "lookup": _lookup, "resolve": _resolve, "heartbeat": _heartbeat,
    "deregister": _deregister, "set_hostname": _set_hostname, "resolve_hostname": _resolve_hostname,
    "set_visibility": _set_visibility, "report_trust": _report_trust, "revoke_trust": _revoke_trust,
    "check_trust": _check_trust, "request_handshake": _request_handshake, "poll_handshakes": _poll_handshakes,
    "respond_handshake": _respond_handshake, "punch": _punch, "create_network": _create_network,
    "join_network": _join_network, "leave_network": _leave_network, "list_networks": _list_networks,
    "list_nodes": _list_nodes, "promote_member": _promote, "demote_member": _demote, "kick_member": _kick,
    "transfer_ownership": _transfer, "delete_network": _delete_network, "set_network_policy": _set_policy,
    "get_network_policy": _get_policy, "get_member_role": _get_role, "get_audit_log": _get_audit_log,
}  # fmt: skip

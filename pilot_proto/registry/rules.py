"""The registry's rules for nodes: registration, lookups, hostnames, visibility, trust, relayed handshakes,
punch and key rotation (draft 3.2, 10.1, 10.6, 10.7, 19.3; wire-notes 1.22).

Each rule takes the staged change set, the request, the TCP peer's host and ``now``, and returns the reply
or raises :class:`~pilot_proto.errors.RemoteProtocolError` before staging anything it cannot finish
(``state.py`` explains the idiom).  The shared checks -- field types, the admin token, signatures and the
``draft`` replay floor -- live here too; :mod:`~pilot_proto.registry.networks` uses them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pilot_proto.errors import ErrorCode, LocalProtocolError
from pilot_proto.profile import Profile
from pilot_proto.registry.challenges import base_challenge, timestamped
from pilot_proto.registry.state import (
    _HOSTNAME,
    _RESERVED_HOSTNAMES,
    PROTOCOL_VERSION,
    RESERVED_NODE_IDS,
    NodeDeregistered,
    NodeRegistered,
    Registry,
    TrustChanged,
    _Node,
    _refuse,
    _Staged,
)
from pilot_proto.wire.address import Addr

# -- field checks ------------------------------------------------------------------------------


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


def _bool(msg: dict[str, Any], key: str) -> bool:
    """The required JSON boolean ``msg[key]``."""
    v = msg.get(key)
    if not isinstance(v, bool):
        raise _refuse(ErrorCode.BAD_VALUE, f"{key} required: true or false", key)
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
    if node.tags:
        reply["tags"] = list(node.tags)
    if node.task_exec:
        reply["task_exec"] = True
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
    if reg._invites.get(nid):  # its pending invites, both ways, go with it (as Go)
        st.del_invites(nid, [inv["network_id"] for inv in reg._invites[nid]])
    st.revoke_invites(nid)
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
    public = _bool(msg, "public")
    _verify(st, node, msg, now)
    st.put_node(replace(node, public=public, networks=list(node.networks)))
    st.audit(now, "visibility.changed", node.node_id, old=node.public, new=public)
    return {"type": "set_visibility_ok", "node_id": node.node_id, "visibility": "public" if public else "private"}


_TAG = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")  # Go tagRegex
MAX_TAGS = 10  # Go's registry limit (its daemon allows 3 per SetTags, E-DF-2)


def _set_tags(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    """What a node advertises (IPC SetTags, draft 16.2): at most 10 tags of ``[a-z0-9-]``, 1-32 chars, a leading
    ``#`` dropped and duplicates removed (Go's rules); signed over ``set_tags:<n>``."""
    node = _live(st.reg, _uint(msg, "node_id"))
    raw = msg.get("tags")
    if raw is None:
        raw = []
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise _refuse(ErrorCode.BAD_VALUE, "tags must be a list of strings", "tags")
    tags = list(dict.fromkeys(t[1:] if t.startswith("#") else t for t in raw))
    if len(tags) > MAX_TAGS:
        raise _refuse(ErrorCode.TOO_LARGE, f"too many tags (max {MAX_TAGS})", "tags")
    for tag in tags:
        if not tag:
            raise _refuse(ErrorCode.BAD_VALUE, "empty tag not allowed", "tags")
        if len(tag) > 32:
            raise _refuse(ErrorCode.TOO_LARGE, f"tag {tag!r} too long (max 32 chars)", "tags")
        if not _TAG.match(tag):
            raise _refuse(ErrorCode.BAD_VALUE, f"tag {tag!r} must be lowercase alphanumeric with hyphens", "tags")
    _verify(st, node, msg, now)
    st.put_node(replace(node, tags=tags, networks=list(node.networks)))
    st.audit(now, "tags.changed", node.node_id, old=list(node.tags), new=tags)
    return {"type": "set_tags_ok", "node_id": node.node_id, "tags": tags}


def _set_task_exec(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    """Whether a node advertises that it executes tasks (IPC SetTaskExec); signed over ``set_task_exec:<n>``."""
    node = _live(st.reg, _uint(msg, "node_id"))
    enabled = _bool(msg, "enabled")
    _verify(st, node, msg, now)
    st.put_node(replace(node, task_exec=enabled, networks=list(node.networks)))
    st.audit(now, "task_exec.changed", node.node_id, old=node.task_exec, new=enabled)
    return {"type": "set_task_exec_ok", "node_id": node.node_id, "task_exec": enabled}


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
    inbox = reg._inbox.get(b, [])
    if any(r["from_node_id"] == a.node_id for r in inbox):
        raise _refuse(ErrorCode.INVALID_STATE, f"handshake request already pending from node {a.node_id}",
                      "from_node_id")  # fmt: skip
    if len(inbox) >= reg.config.max_handshake_inbox:
        raise _refuse(ErrorCode.TABLE_FULL, f"handshake inbox full for node {b}", "to_node_id")
    _consent(st, a.node_id, b, now)  # asking for trust is consenting to it
    reg._inbox.setdefault(b, []).append({"from_node_id": a.node_id, "justification": justification,
                                         "timestamp": int(now)})  # fmt: skip
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
    accept = _bool(msg, "accept")
    _verify(st, node, msg, now, admin_ok=False)  # signed over respond:<node>:<peer> (E-TRUST-1)
    box = reg._responses.get(peer, [])
    if len(box) >= reg.config.max_handshake_inbox:
        raise _refuse(ErrorCode.TABLE_FULL, f"handshake response inbox full for node {peer}", "peer_id")
    if accept:
        _consent(st, node.node_id, peer, now)
    reg._responses.setdefault(peer, []).append({"from_node_id": node.node_id, "accept": accept,
                                                "timestamp": int(now)})  # fmt: skip
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


def _rotate_key(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    """Move a node ID to a new key: signed by the current key and, over the same string, by the new one."""
    reg = st.reg
    node = _live(reg, _uint(msg, "node_id"))
    new_text = _str(msg, "new_public_key", 100, required=True)
    new_key = _b64(new_text, 32, "new_public_key")
    holder = reg._by_key.get(new_key)
    if holder is not None:
        raise _refuse(ErrorCode.INVALID_STATE, f"new_public_key is already node {holder}'s key", "new_public_key")
    _verify(st, node, msg, now, admin_ok=False)  # the current key: rotate:<n>:<new key> (E-REG-1)
    proof = msg.get("new_signature")
    if not isinstance(proof, str) or not proof:
        raise _refuse(ErrorCode.AUTH_REQUIRED, "new_signature required: the new key signs the same string",
                      "new_signature", "CONS-004", "19.3")  # fmt: skip
    try:
        Ed25519PublicKey.from_public_bytes(new_key).verify(_b64(proof, 64, "new_signature"),
                                                           base_challenge(msg).encode())  # fmt: skip
    except (InvalidSignature, ValueError):
        raise _refuse(ErrorCode.BAD_SIGNATURE, "new_signature verification failed", "new_signature") from None
    st.put_node(replace(node, public_key=new_key, key_created=now, networks=list(node.networks)))
    st.audit(now, "key.rotated", node.node_id)
    return {"type": "rotate_key_ok", "node_id": node.node_id, "address": _addr(node.node_id),
            "public_key": new_text}  # fmt: skip


NODE_HANDLERS: dict[str, Handler] = {
    "register": _register,
    "lookup": _lookup,
    "resolve": _resolve,
    "heartbeat": _heartbeat,
    "deregister": _deregister,
    "set_hostname": _set_hostname,
    "resolve_hostname": _resolve_hostname,
    "set_visibility": _set_visibility,
    "report_trust": _report_trust,
    "revoke_trust": _revoke_trust,
    "check_trust": _check_trust,
    "request_handshake": _request_handshake,
    "poll_handshakes": _poll_handshakes,
    "respond_handshake": _respond_handshake,
    "punch": _punch,
    "rotate_key": _rotate_key,
    "set_tags": _set_tags,
    "set_task_exec": _set_task_exec,
}

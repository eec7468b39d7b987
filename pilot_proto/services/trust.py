"""Trust handshake, port 444 (draft 10.6, 10.7): requests, approvals, the trusted set and the trust gate's answer.

One JSON message per connection (Go's ``HandshakeMsg``, codec :mod:`pilot_proto.wire.trust`).  The
book keeps three tables, each bounded: ``trusted`` (node -> record), ``pending`` (requests waiting
for the operator, at most ``max_pending_requests``) and ``outgoing`` (requests we sent).

* a request from a trusted node is answered with an accept; a request from a node we asked
  ourselves is *mutual* and approved automatically (10.6 path 1); otherwise it waits for
  :meth:`TrustService.approve` / :meth:`TrustService.reject` (path 3);
* an accept counts only from a node we asked (the Go reference trusts any accept: erratum E-DMN-2);
* the message's ``node_id`` must be the node the tunnel authenticated as the connection's peer;
* timestamps older than 5 min or 30 s ahead are refused, a replayed message (same bytes) is refused;
* signatures (``handshake:<sender>:<receiver>``) are checked against the key we know for the peer
  (``peer_key``) or the key the message carries; under ``draft`` an unsigned message is refused,
  under ``go-interop`` it is accepted as Go accepts it.

Outgoing messages are pulled with :meth:`TrustService.messages_to_send` as ``(node_id, bytes)``: the
daemon dials the node's port 444, writes the bytes and closes.  Wall-clock seconds come in as
``unix_now`` arguments or as ``now + clock_offset``: the service reads no clock.
"""

from __future__ import annotations

import base64
import hashlib
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError, RemoteProtocolError
from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.sansio import Event, InputRejected
from pilot_proto.services.base import ServiceConn, StreamService
from pilot_proto.tunnel.identity import Identity
from pilot_proto.wire.ports import WellKnownPort
from pilot_proto.wire.trust import (
    MAX_AGE,
    TrustMessage,
    TrustType,
    check_timestamp,
    decode_trust,
    encode_trust,
    handshake_signing_string,
)

__all__ = ["PendingRequest", "RelayAction", "TrustChanged", "TrustRecord", "TrustRequested", "TrustService"]

MAX_MESSAGE = 64 * 1024  # bytes buffered for one port-444 message
MAX_PENDING_REQUESTS = 100
MAX_TRUSTED = 10_000
MAX_REPLAY = 10_000
MAX_OUTBOX = 1024


@dataclass(frozen=True, slots=True)
class TrustRecord:
    node_id: int
    public_key: bytes
    approved_at: int
    mutual: bool = False
    network: int = 0


@dataclass(frozen=True, slots=True)
class PendingRequest:
    node_id: int
    public_key: bytes
    justification: str
    received_at: int


@dataclass(frozen=True, slots=True)
class RelayAction:
    """A trust message for the registry to relay, because ``peer`` could not be reached directly (draft 10.6)."""

    peer: int
    kind: TrustType
    text: str = ""  # the justification of a request, the reason of a rejection


@dataclass(frozen=True, slots=True)
class TrustRequested(Event):
    """A request waits for the operator (``approve`` / ``reject``)."""

    node_id: int
    justification: str


@dataclass(frozen=True, slots=True)
class TrustChanged(Event):
    """``node_id`` became trusted (``trusted=True``) or stopped being trusted; ``how`` says why."""

    node_id: int
    trusted: bool
    how: str


def _refuse(code: ErrorCode, rule: str, requirement: str | None = None) -> RemoteProtocolError:
    return RemoteProtocolError(code, rule, field="trust", section="10.6", requirement=requirement)


class TrustService(StreamService):
    """Port 444 plus the node's trust book."""

    name = "trust"

    def __init__(
        self,
        node_id: int,
        identity: Identity | None = None,
        *,
        profile: Profile = DEFAULT_PROFILE,
        peer_key: Callable[[int], bytes | None] | None = None,
        port: int = WellKnownPort.TRUST,
        max_pending_requests: int = MAX_PENDING_REQUESTS,
    ) -> None:
        super().__init__(port, max_pending=MAX_MESSAGE)
        self.node_id = node_id
        self.identity = identity
        self.profile = profile
        self.peer_key = peer_key if peer_key is not None else (lambda node: None)
        self.max_pending_requests = max_pending_requests
        self.clock_offset = 0.0  # unix seconds = now + clock_offset (set by the driver)
        self.trusted: dict[int, TrustRecord] = {}
        self.pending: dict[int, PendingRequest] = {}
        self.outgoing: set[int] = set()
        self._buffers: dict[int, bytearray] = {}
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._outbox: deque[tuple[int, bytes]] = deque()
        self._relay: deque[RelayAction] = deque()

    # -- the book --------------------------------------------------------------------------------

    def is_trusted(self, node_id: int) -> bool:
        return node_id in self.trusted

    def request(self, peer: int, justification: str, unix_now: float) -> str:
        """Ask ``peer`` for trust; returns ``"already_trusted"`` or ``"sent"``."""
        if peer in self.trusted:
            return "already_trusted"
        if peer in self.pending:  # they asked first: asking back is mutual
            self._trust(peer, self.pending.pop(peer).public_key, unix_now, mutual=True, how="mutual")
            self._send(peer, TrustType.ACCEPT, unix_now)
            return "sent"
        self.outgoing.add(peer)
        self._send(peer, TrustType.REQUEST, unix_now, justification=justification)
        return "sent"

    def approve(self, peer: int, unix_now: float) -> None:
        req = self.pending.pop(peer, None)
        if req is None:
            raise LocalProtocolError(ErrorCode.INVALID_STATE, f"no pending trust request from node {peer}",
                                     field="node_id", section="10.6")  # fmt: skip
        self._trust(peer, req.public_key, unix_now, mutual=False, how="approved")
        self._send(peer, TrustType.ACCEPT, unix_now)

    def reject(self, peer: int, reason: str, unix_now: float) -> None:
        if self.pending.pop(peer, None) is None:
            raise LocalProtocolError(ErrorCode.INVALID_STATE, f"no pending trust request from node {peer}",
                                     field="node_id", section="10.6")  # fmt: skip
        self._send(peer, TrustType.REJECT, unix_now, reason=reason)

    def revoke(self, peer: int, unix_now: float) -> None:
        if self.trusted.pop(peer, None) is None:
            raise LocalProtocolError(ErrorCode.INVALID_STATE, f"node {peer} is not trusted", field="node_id",
                                     section="10.6")  # fmt: skip
        self.emit(TrustChanged(peer, False, "revoked"))
        self._send(peer, TrustType.REVOKE, unix_now)

    def snapshot(self) -> dict[str, Any]:
        """The trusted set and pending requests as a JSON-able document (Go keeps the same in ``trust.json``)."""
        return {
            "trusted": [{"node_id": t.node_id, "public_key": base64.b64encode(t.public_key).decode(),
                         "approved_at": t.approved_at, "mutual": t.mutual, "network": t.network}
                        for t in self.trusted.values()],
            "pending": [{"node_id": p.node_id, "public_key": base64.b64encode(p.public_key).decode(),
                         "justification": p.justification, "received_at": p.received_at}
                        for p in self.pending.values()],
        }  # fmt: skip

    def restore(self, doc: dict[str, Any]) -> None:
        """Load a :meth:`snapshot` (draft 10.6: trust pairs survive restarts).  ValueError if it is malformed."""
        try:
            trusted = {
                int(t["node_id"]): TrustRecord(
                    int(t["node_id"]),
                    base64.b64decode(t.get("public_key", "")),
                    int(t.get("approved_at", 0)),
                    bool(t.get("mutual", False)),
                    int(t.get("network", 0)),
                )
                for t in doc.get("trusted", [])
            }
            pending = {int(p["node_id"]): PendingRequest(int(p["node_id"]), base64.b64decode(p.get("public_key", "")),
                                                         str(p.get("justification", "")), int(p.get("received_at", 0)))
                       for p in doc.get("pending", [])}  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a trust snapshot: {exc}") from None
        if len(trusted) > MAX_TRUSTED or len(pending) > self.max_pending_requests:
            raise ValueError("trust snapshot exceeds the table bounds")
        self.trusted, self.pending = trusted, pending

    # -- the registry relay (for peers we cannot reach directly, e.g. private ones) ---------------------------

    def undeliverable(self, peer: int, message: bytes) -> None:
        """The daemon could not deliver ``message`` (one of ours) to ``peer``: hand it to the registry relay."""
        msg = decode_trust(message, self.profile)
        self._relay.append(RelayAction(peer, msg.type, msg.justification or msg.reason))
        while len(self._relay) > MAX_OUTBOX:
            self._relay.popleft()

    def relays_to_send(self) -> list[RelayAction]:
        out = list(self._relay)
        self._relay.clear()
        return out

    def relayed_request(self, sender: int, justification: str, unix_now: float) -> None:
        """A request the registry relayed; the registry checked its signature (SEC-020)."""
        key = self.peer_key(sender) or b""
        self._on_request(TrustMessage(TrustType.REQUEST, sender, key, justification, b"", "", int(unix_now)),
                         unix_now)  # fmt: skip

    def relayed_response(self, sender: int, accept: bool, unix_now: float) -> None:
        """An approval or rejection the registry relayed; it counts only if we asked ``sender``."""
        if sender not in self.outgoing:
            self.emit(InputRejected(_refuse(ErrorCode.INVALID_STATE, f"relayed response from node {sender}, "
                                            "which we did not ask (E-DMN-2)"), self.name, None, 0, sender))  # fmt: skip
            return
        self.outgoing.discard(sender)
        if accept:
            self._trust(sender, self.peer_key(sender) or b"", unix_now, mutual=True, how="accepted via the registry")

    def messages_to_send(self) -> list[tuple[int, bytes]]:
        """``(node_id, message)`` pairs to deliver on a fresh connection to the node's port 444."""
        out = list(self._outbox)
        self._outbox.clear()
        return out

    # -- port 444 --------------------------------------------------------------------------------

    def on_open(self, conn_id: int, now: float) -> None:
        self._buffers[conn_id] = bytearray()

    def on_data(self, conn_id: int, conn: ServiceConn, data: bytes, now: float) -> None:
        buf = self._buffers.get(conn_id)
        if buf is None:
            return  # the one message was handled; later bytes are ignored
        buf += data
        if len(buf) > MAX_MESSAGE:
            raise _refuse(ErrorCode.TOO_LARGE, f"trust message over {MAX_MESSAGE} bytes", "SVC-061")
        try:
            msg = decode_trust(bytes(buf), self.profile)
        except DecodeError:
            return  # maybe incomplete: wait for more, or for the FIN
        self._handle(conn_id, conn, bytes(buf), msg, now + self.clock_offset)

    def on_end(self, conn_id: int, conn: ServiceConn, now: float) -> None:
        buf = self._buffers.get(conn_id)
        if buf:
            self._handle(conn_id, conn, bytes(buf), decode_trust(bytes(buf), self.profile), now + self.clock_offset)
        self.finish(conn_id)

    def on_closed(self, conn_id: int) -> None:
        self._buffers.pop(conn_id, None)

    # -- internals -------------------------------------------------------------------------------

    def _handle(self, conn_id: int, conn: ServiceConn, raw: bytes, msg: TrustMessage, unix_now: float) -> None:
        self._buffers.pop(conn_id, None)
        self.finish(conn_id)
        sender = conn.remote.addr.node
        if msg.node_id != sender:
            raise _refuse(ErrorCode.SPOOFED, f"message claims node {msg.node_id} on a tunnel from node {sender}")
        check_timestamp(msg, unix_now)
        digest = hashlib.sha256(raw).digest()
        self._reap(unix_now)
        if digest in self._seen:
            raise _refuse(ErrorCode.REPLAY, "this trust message was already received", "SVC-066")
        self._seen[digest] = unix_now
        while len(self._seen) > MAX_REPLAY:
            self._seen.popitem(last=False)
        self._verify(msg)
        if msg.type is TrustType.REQUEST:
            self._on_request(msg, unix_now)
        elif msg.type is TrustType.ACCEPT:
            if sender not in self.outgoing:
                raise _refuse(ErrorCode.INVALID_STATE, f"accept from node {sender}, which we did not ask (E-DMN-2)")
            self.outgoing.discard(sender)
            self._trust(sender, msg.public_key, unix_now, mutual=True, how="accepted")
        elif msg.type is TrustType.REJECT:
            self.outgoing.discard(sender)
        elif self.trusted.pop(sender, None) is not None:  # REVOKE
            self.emit(TrustChanged(sender, False, "revoked by peer"))

    def _on_request(self, msg: TrustMessage, unix_now: float) -> None:
        peer = msg.node_id
        if peer in self.trusted:
            self._send(peer, TrustType.ACCEPT, unix_now)
        elif peer in self.outgoing:
            self.outgoing.discard(peer)
            self._trust(peer, msg.public_key, unix_now, mutual=True, how="mutual")
            self._send(peer, TrustType.ACCEPT, unix_now)
        elif peer in self.pending or len(self.pending) < self.max_pending_requests:
            self.pending[peer] = PendingRequest(peer, msg.public_key, msg.justification, int(unix_now))
            self.emit(TrustRequested(peer, msg.justification))
        else:
            raise _refuse(ErrorCode.TABLE_FULL, f"{len(self.pending)} trust requests already pending")

    def _verify(self, msg: TrustMessage) -> None:
        known = self.peer_key(msg.node_id)
        if known is not None and msg.public_key and msg.public_key != known:
            raise _refuse(ErrorCode.AUTH_FAILED, "the message's public key is not the one registered for its node")
        key = known or msg.public_key
        if not msg.signature:
            if self.profile is Profile.DRAFT:
                raise _refuse(ErrorCode.AUTH_FAILED, "unsigned trust message", "SEC-020")
            return
        if not key:
            raise _refuse(ErrorCode.AUTH_FAILED, "signed message but no key to check it against", "SEC-020")
        try:
            Ed25519PublicKey.from_public_bytes(key).verify(
                msg.signature, handshake_signing_string(msg.node_id, self.node_id)
            )
        except (InvalidSignature, ValueError):
            raise _refuse(ErrorCode.AUTH_FAILED, "trust message signature does not verify", "SEC-020") from None

    def _trust(self, peer: int, key: bytes, unix_now: float, *, mutual: bool, how: str) -> None:
        if peer not in self.trusted and len(self.trusted) >= MAX_TRUSTED:
            raise LocalProtocolError(ErrorCode.TABLE_FULL, "trusted set is full", field="trust", section="10.6")
        self.trusted[peer] = TrustRecord(peer, key, int(unix_now), mutual)
        self.pending.pop(peer, None)
        self.emit(TrustChanged(peer, True, how))

    def _send(self, peer: int, mtype: TrustType, unix_now: float, *, justification: str = "", reason: str = "") -> None:
        ident = self.identity
        public = ident.public_bytes if ident is not None else b""
        signature = ident.sign(handshake_signing_string(self.node_id, peer)) if ident is not None else b""
        msg = TrustMessage(mtype, self.node_id, public, justification, signature, reason, int(unix_now))
        self._outbox.append((peer, encode_trust(msg)))
        while len(self._outbox) > MAX_OUTBOX:
            self._outbox.popleft()

    def _reap(self, unix_now: float) -> None:
        seen = self._seen
        while seen:
            first, at = next(iter(seen.items()))
            if unix_now - at <= MAX_AGE:
                break
            del seen[first]

"""Sans-IO tunnel endpoint: key exchange, PILS sealing/opening and PILT policy for many peers (draft 7, 10, 11, 19).

It speaks the one idiom of :mod:`pilot_proto.sansio`: inputs are datagrams
(:meth:`TunnelEndpoint.receive_datagram`), packets to send
(:meth:`TunnelEndpoint.send`) and the time (``now``, seconds, given by the
caller), and return nothing; outputs are pulled -- :class:`~pilot_proto.sansio.Datagram`
values from :meth:`TunnelEndpoint.datagrams_to_send` and events from
:meth:`TunnelEndpoint.next_event`.  A refused datagram is exactly one
:class:`~pilot_proto.sansio.InputRejected` event carrying the whole error, and its
``action`` is acted on in one place (:meth:`TunnelEndpoint._act`).  No socket,
clock or RNG lives here: ``rng(n) -> bytes`` supplies X25519 keys and nonce
prefixes, and the Ed25519 keys of other nodes come from ``peer_keys`` (the
registry's answers).

Receive side rules, all of which leave state untouched when they reject:

* PILS is looked up by the cleartext sender ID (TUN-012); a frame that fails
  the GCM tag, the replay window or the inner-source check (SEC-027) changes
  nothing, so forged traffic cannot lock out the real peer (CONS-019).
* PILA must verify against the known Ed25519 key of the sender (TUN-019,
  TUN-020).  PILK is refused from a peer that has authenticated before
  (SEC-029) and from a node whose Ed25519 key is known (GoB does the same).
* PILT is refused from a peer we share a key with (SEC-005).

Send side: PILS whenever a session exists, PILA if we have an identity
(SEC-011) else PILK to start one, packets queued meanwhile; plaintext only in
the draft's fallback (SEC-007) and never once a key exists.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pilot_proto.errors import Action, ErrorCode, LocalProtocolError, PilotError, RemoteProtocolError
from pilot_proto.sansio import Address, Datagram, Event, InputRejected
from pilot_proto.tunnel.aead import PilsOpener, PilsSealer, SessionCipher
from pilot_proto.tunnel.config import TunnelConfig
from pilot_proto.tunnel.events import (
    KeyEstablished,
    KeyExchangeFailed,
    PacketReceived,
    Rekeyed,
)
from pilot_proto.tunnel.identity import Identity, NodeIdentity, verify_auth_kex
from pilot_proto.tunnel.kdf import derive_tunnel_key, wipe, x25519_shared_secret
from pilot_proto.tunnel.peer import PeerTunnel, Session
from pilot_proto.wire.frames import (
    AuthKeyExchangeFrame,
    EncryptedFrame,
    KeyExchangeFrame,
    PlaintextFrame,
    encode_frame,
)
from pilot_proto.wire.frames import decode_frame as _decode_frame
from pilot_proto.wire.header import Packet, decode_packet, encode_packet

__all__ = ["Rng", "TunnelEndpoint"]

#: Source of cryptographically secure random bytes, injected by the driver (``os.urandom`` in production).
Rng = Callable[[int], bytes]
PeerKeys = Callable[[int], bytes | None] | Mapping[int, bytes]


class TunnelEndpoint:
    """All tunnel sessions of one daemon (node ``node_id``), demultiplexed by sender node ID."""

    def __init__(
        self,
        node_id: int,
        rng: Rng,
        *,
        identity: Identity | None = None,
        config: TunnelConfig | None = None,
        peer_keys: PeerKeys | None = None,
    ) -> None:
        self.node_id = node_id
        self.config = config or TunnelConfig.for_profile()
        self._rng = rng
        self.identity = NodeIdentity(node_id, identity) if identity is not None else None
        self._peer_keys: dict[int, bytes] = {}
        self._lookup: Callable[[int], bytes | None] | None = None
        if callable(peer_keys):
            self._lookup = peer_keys
        elif peer_keys is not None:
            self._peer_keys.update(peer_keys)
        self.peers: dict[int, PeerTunnel] = {}
        self._outbox: list[Datagram] = []
        self._events: deque[Event] = deque()
        self._node_bytes = node_id.to_bytes(4, "big")
        self._static_key: X25519PrivateKey | None = None
        if not self.config.ephemeral_per_session:
            self._static_key = X25519PrivateKey.from_private_bytes(self._random(32))

    # -- configuration ---------------------------------------------------------------------------------

    def add_peer(self, node: int, address: Address) -> PeerTunnel:
        """Record (or move) the underlay address of ``node``."""
        peer = self._peer(node)
        peer.address = address
        return peer

    def set_peer_key(self, node: int, ed25519_public: bytes) -> None:
        """The Ed25519 key the registry binds to ``node`` (used to verify its PILA)."""
        if len(ed25519_public) != 32:
            raise ValueError("an Ed25519 public key is 32 bytes")
        self._peer_keys[node] = bytes(ed25519_public)

    def known_key(self, node: int) -> bytes | None:
        key = self._peer_keys.get(node)
        if key is None and self._lookup is not None:
            key = self._lookup(node)
        return key

    # -- outputs ---------------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Datagram]:
        """Drain the datagrams queued since the last call."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> Event | None:
        """Next :class:`KeyEstablished`, :class:`Rekeyed`, :class:`PacketReceived`, :class:`KeyExchangeFailed`
        or :class:`~pilot_proto.sansio.InputRejected`, or ``None``."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [p.offer_next for p in self.peers.values() if p.offer_next is not None]
        return min(deadlines) if deadlines else None

    # -- sending ---------------------------------------------------------------------------------------

    def send(self, node: int, packet: bytes | Packet, now: float) -> None:
        """Send one packet to ``node``: PILS if keyed, else start a key exchange and queue it."""
        data = encode_packet(packet) if isinstance(packet, Packet) else bytes(packet)
        if data[6:10] != self._node_bytes:
            raise LocalProtocolError(
                ErrorCode.SENDER_MISMATCH,
                f"packet source node is not this endpoint's node {self.node_id}",
                field="packet.src.node",
                section="10.2",
                requirement="SEC-027",
            )
        peer = self.peers.get(node)
        if peer is None or peer.address is None:
            raise LocalProtocolError(
                ErrorCode.UNKNOWN_PEER, f"no underlay address for node {node}", field="peer", section="7"
            )
        if not self.config.encryption:
            self._outbox.append(Datagram(encode_frame(PlaintextFrame(data)), peer.address))
            return
        session = peer.active
        holding = self.config.hold_during_rekey and peer.offer_private is not None
        if session is not None and not session.sealer.exhausted and not holding:
            self._outbox.append(Datagram(session.sealer.seal(data), peer.address))
            if session.sealer.needs_rekey and peer.offer_private is None:
                self._offer(peer, now)
            return
        if session is None and peer.plaintext_mode:
            self._outbox.append(Datagram(encode_frame(PlaintextFrame(data)), peer.address))
            return
        if len(peer.pending) >= self.config.max_pending:
            peer.pending.popleft()
        peer.pending.append(data)
        if peer.offer_private is None:
            self._offer(peer, now)

    def rekey(self, node: int, now: float) -> None:
        """Offer a fresh X25519 key to ``node`` now (the old session keeps working until answered)."""
        peer = self.peers.get(node)
        if peer is None or peer.address is None:
            raise LocalProtocolError(ErrorCode.UNKNOWN_PEER, f"no underlay address for node {node}", field="peer")
        if peer.offer_private is None:
            self._offer(peer, now)

    # -- timers ----------------------------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Retransmit unanswered key offers; after the last retry fall back (draft) or give up."""
        events = self._events
        cfg = self.config
        for peer in self.peers.values():
            if peer.offer_next is None or peer.offer_next > now:
                continue
            if peer.offer_attempts <= cfg.kex_retries:
                peer.offer_attempts += 1
                peer.offer_next = now + cfg.kex_retry_interval
                self._send_kex(peer, peer.offer_public or b"", peer.address)
                continue
            peer.clear_offer()
            session = peer.active
            if session is not None:  # a re-key went unanswered: the old session carries on while it can
                while peer.pending and peer.address is not None and not session.sealer.exhausted:
                    self._outbox.append(Datagram(session.sealer.seal(peer.pending.popleft()), peer.address))
                dropped = len(peer.pending)
                peer.pending.clear()
                events.append(KeyExchangeFailed(peer.node, fallback=False, dropped=dropped))
                continue
            dropped = len(peer.pending)
            if cfg.plaintext_fallback and peer.address is not None:
                peer.plaintext_mode = True
                while peer.pending:
                    self._outbox.append(Datagram(encode_frame(PlaintextFrame(peer.pending.popleft())), peer.address))
                events.append(KeyExchangeFailed(peer.node, fallback=True, dropped=0))
            else:
                peer.pending.clear()
                events.append(KeyExchangeFailed(peer.node, fallback=False, dropped=dropped))

    # -- receiving -------------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """Process one UDP datagram.  Bad input yields one ``InputRejected`` event and changes nothing."""
        try:
            self._events.extend(self._receive(data, addr, now))
        except PilotError as exc:
            peer = int.from_bytes(data[4:8], "big") if len(data) >= 8 and data[:4] != b"PILT" else None
            self._events.append(InputRejected(exc, "tunnel", addr, len(data), peer))
            self._act(exc, peer, now)

    def _act(self, error: PilotError, peer: int | None, now: float) -> None:
        """The one place where the action of a refused datagram is carried out (issue 8).

        ``DROP``: nothing more.  ``REKEY``: offer a fresh key to the *known* address of an existing peer
        (never to the datagram's source, so no unauthenticated frame makes us send to a third party).
        ``CLOSE``: forget the peer's sessions.  ``RST`` is the session layer's; a tunnel never emits it
        (inner packets with a bad version go up so the stream layer can answer, draft 12.2).
        """
        action = error.action
        if action is Action.DROP or peer is None:
            return
        known = self.peers.get(peer)
        if known is None:
            return
        if action is Action.REKEY:
            if known.address is not None and known.offer_private is None:
                self._offer(known, now)
        elif action is Action.CLOSE:
            known.sessions.clear()
            known.clear_offer()

    def _receive(self, data: bytes, address: Address, now: float) -> list[Event]:
        frame = _decode_frame(data, self.config.profile)
        if getattr(frame, "sender", None) == self.node_id:
            raise RemoteProtocolError(
                ErrorCode.SPOOFED,
                f"frame claims our own node ID {self.node_id} as sender (reflected or spoofed)",
                field="sender",
                section="7",
            )
        if isinstance(frame, EncryptedFrame):
            return self._on_pils(frame, address, now)
        if isinstance(frame, AuthKeyExchangeFrame):
            if frame.trailer and not self.config.lenient_frames:
                raise RemoteProtocolError(ErrorCode.TRAILING_DATA, "bytes after PILA", section="7.4")
            verify_auth_kex(frame, self.known_key(frame.sender))
            return self._on_kex(frame.sender, frame.x25519_public, True, address, now)
        if isinstance(frame, KeyExchangeFrame):
            self._check_pilk(frame.sender)
            return self._on_kex(frame.sender, frame.x25519_public, False, address, now)
        if isinstance(frame, PlaintextFrame):
            return self._on_pilt(frame, address)
        return []  # PILP: nothing to do at this layer (draft 7.5)

    def _on_pils(self, frame: EncryptedFrame, address: Address, now: float) -> list[Event]:
        peer = self.peers.get(frame.sender)
        if peer is None or not peer.sessions:
            raise RemoteProtocolError(
                ErrorCode.NO_SESSION_KEY,
                f"no session key for sender {frame.sender}",
                field="pils.sender",
                section="7.2",
                requirement="TUN-012",
            )
        first_error: RemoteProtocolError | None = None
        for session in peer.sessions:
            try:
                plaintext = session.opener.open(frame.nonce, frame.ciphertext)
            except RemoteProtocolError as exc:
                if first_error is None or first_error.code is ErrorCode.AUTH_FAILED:
                    first_error = exc
                continue
            break
        else:
            assert first_error is not None
            if first_error.code is ErrorCode.AUTH_FAILED and self._sealed_under_offer(peer, frame):
                # The peer switched to the key our re-key offer implies before its answer reached us (E-KEX-2):
                # the tag proves it holds that key, so complete the exchange as its answer would have.
                active = peer.active
                assert active is not None
                events = self._on_kex(peer.node, active.peer_public, active.authenticated, address, now)
                return events + self._on_pils(frame, address, now)
            raise first_error
        # authenticated from here: the counter is consumed even if the inner packet is malformed
        peer.address = address
        if frame.nonce[:4] == session.sealer.prefix and peer.offer_private is None:
            self._offer(peer, now)  # both directions share a nonce prefix: re-key (E-NONCE-3)
        packet = decode_packet(plaintext, self.config.profile)
        return [PacketReceived(frame.sender, packet, address, True)]

    def _sealed_under_offer(self, peer: PeerTunnel, frame: EncryptedFrame) -> bool:
        """True if ``frame`` verifies under the anticipated key of our pending offer.  Touches no state."""
        candidate = peer.offer_candidate
        if candidate is None:
            return False
        try:
            candidate.aead.decrypt(frame.nonce, frame.ciphertext, frame.sender.to_bytes(4, "big"))
        except InvalidTag:
            return False
        return True

    def _check_pilk(self, node: int) -> None:
        cfg = self.config
        peer = self.peers.get(node)
        if not cfg.accept_pilk:
            reason = "anonymous key exchange is disabled"
        elif peer is not None and peer.authenticated_once and not cfg.allow_downgrade:
            reason = f"node {node} authenticated with PILA before; PILK would be a downgrade"
        elif cfg.require_pila_from_known and self.known_key(node) is not None:
            reason = f"node {node} has a known Ed25519 key and must use PILA"
        else:
            return
        raise RemoteProtocolError(ErrorCode.AUTH_REQUIRED, reason, field="pilk", section="10.4", requirement="SEC-029")

    def _on_kex(self, node: int, peer_public: bytes, authenticated: bool, address: Address, now: float) -> list[Event]:
        peer = self.peers.get(node)
        active = peer.active if peer is not None else None
        if peer is not None and peer.offer_private is not None:
            private, our_public, reply = peer.offer_private, peer.offer_public, False
        elif active is not None and active.peer_public == peer_public:
            # the same key again: the peer may have missed our answer; answer, rate-limited, change nothing else
            if active.authenticated and not authenticated:
                raise RemoteProtocolError(
                    ErrorCode.AUTH_REQUIRED, "PILK repeating a PILA-authenticated key", section="10.4",
                    requirement="SEC-029",
                )  # fmt: skip
            assert peer is not None
            if peer.last_answer is None or now - peer.last_answer >= self.config.kex_answer_interval:
                peer.last_answer = now
                self._send_kex(peer, active.our_public, address)
            return []
        elif (
            peer is not None
            and peer.answer_private is not None
            and peer.answer_at is not None
            and now - peer.answer_at < self.config.kex_answer_interval
        ):
            # a new key right after we answered one: the peer took our answer for an offer (it lost its own
            # offer to a stale frame).  Pair it with the key we answered with and stay silent, so two endpoints
            # can never bounce fresh keys at each other for ever (E-KEX-1).
            private, reply = peer.answer_private, False
            our_public = private.public_key().public_bytes_raw()
        else:
            private = self._new_private()
            our_public, reply = private.public_key().public_bytes_raw(), True
        assert our_public is not None
        secret = x25519_shared_secret(private, peer_public)  # raises BAD_PUBLIC_KEY before any state changes
        key = derive_tunnel_key(secret)
        wipe(secret)
        cipher = SessionCipher(key)  # wipes key
        peer = self._peer(node)
        if peer.address is None or authenticated:
            peer.address = address
        session = Session(
            cipher=cipher,
            sealer=PilsSealer(
                cipher,
                self.node_id,
                self._prefix(node),
                counter_start=self.config.counter_start,
                limit=self.config.counter_limit,
                rekey_margin=self.config.rekey_margin,
            ),
            opener=PilsOpener(
                cipher, node, window_size=self.config.replay_window, max_prefixes=self.config.max_prefixes
            ),
            our_public=our_public,
            peer_public=bytes(peer_public),
            authenticated=authenticated,
            established_at=now,
        )
        first = not peer.sessions
        previous = peer.active
        peer.sessions.insert(0, session)
        del peer.sessions[1 + self.config.max_old_sessions :]
        peer.clear_offer()
        peer.plaintext_mode = False
        peer.authenticated_once = peer.authenticated_once or authenticated
        peer.answer_private, peer.answer_at = (private, now) if reply else (None, None)
        if reply:
            peer.last_answer = now
            self._send_kex(peer, our_public, address)
        events: list[Event]
        if first:
            events = [KeyEstablished(node, authenticated, address)]
        else:
            reason = "peer offered a new key" if reply else "our key offer was answered"
            if previous is not None and previous.sealer.needs_rekey:
                reason = "nonce counter near its limit"
            events = [Rekeyed(node, authenticated, address, reason)]
        while peer.pending and peer.address is not None:
            self._outbox.append(Datagram(session.sealer.seal(peer.pending.popleft()), peer.address))
        return events

    def _on_pilt(self, frame: PlaintextFrame, address: Address) -> list[Event]:
        packet = decode_packet(frame.packet, self.config.profile)
        node = packet.src.node
        peer = self.peers.get(node)
        if not self.config.accept_plaintext or (peer is not None and peer.sessions):
            raise RemoteProtocolError(
                ErrorCode.PLAINTEXT_REFUSED,
                f"plaintext from node {node}, which shares a tunnel key with us" if peer else "plaintext is disabled",
                field="pilt",
                section="10.2",
                requirement="SEC-005",
            )
        return [PacketReceived(node, packet, address, False)]

    # -- helpers ---------------------------------------------------------------------------------------

    def _peer(self, node: int) -> PeerTunnel:
        peer = self.peers.get(node)
        if peer is None:
            peer = self.peers[node] = PeerTunnel(node, pending=deque())
        return peer

    def _random(self, n: int) -> bytes:
        out = self._rng(n)
        if len(out) != n:
            raise ValueError(f"rng returned {len(out)} bytes, expected {n}")
        return out

    def _new_private(self) -> X25519PrivateKey:
        if self._static_key is not None:
            return self._static_key
        return X25519PrivateKey.from_private_bytes(self._random(32))

    def _prefix(self, peer_node: int) -> bytes:
        prefix = bytearray(self._random(4))
        if self.config.prefix_role_bit:
            prefix[0] = (prefix[0] & 0x7F) | (0x80 if self.node_id > peer_node else 0)
        return bytes(prefix)

    def _offer(self, peer: PeerTunnel, now: float) -> None:
        private = self._new_private()
        peer.offer_private = private
        peer.offer_public = private.public_key().public_bytes_raw()
        peer.offer_attempts = 1
        peer.offer_next = now + self.config.kex_retry_interval
        active = peer.active
        if self.config.anticipate_rekey and active is not None:
            secret = x25519_shared_secret(private, active.peer_public)
            peer.offer_candidate = SessionCipher(derive_tunnel_key(secret))  # wipes the key buffer
            wipe(secret)
        self._send_kex(peer, peer.offer_public, peer.address)

    def _send_kex(self, peer: PeerTunnel, our_public: bytes, address: Address | None) -> None:
        if address is None:
            return
        frame: AuthKeyExchangeFrame | KeyExchangeFrame
        if self.identity is not None:
            frame = self.identity.auth_kex_frame(our_public)
        else:
            frame = KeyExchangeFrame(self.node_id, our_public)
        self._outbox.append(Datagram(encode_frame(frame), address))

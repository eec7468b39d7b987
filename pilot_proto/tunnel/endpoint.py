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
* Freshness and binding (E-TNL-1): a peer's underlay address moves only on a
  PILS frame that authenticates under its live session (or proves a tentative
  one); a key exchange never moves it.  A key exchange that would replace a
  live session -- anything but the answer to our own pending offer -- only
  opens a *tentative* session (answered, never used to seal), which the first
  PILS frame authenticating under it promotes.  A key the peer used before
  (other than the live one) is refused as stale, and an anonymous PILK for a
  live session from another address is refused outright.  A replayed or
  forged key exchange therefore never moves, replaces or breaks a session.
* PILT is accepted only while a plaintext fallback for that peer is in force,
  and only from the peer's known address (E-TNL-2, SEC-005, SEC-007).
* Key-exchange work is paid for from token buckets before any signature check
  or X25519 operation; peers the endpoint created itself are capped (bounds in
  ``spec/bounds.md``).

Send side: PILS whenever a session exists, PILA if we have an identity
(SEC-011) else PILK to start one, packets queued meanwhile; plaintext only in
the draft's fallback (SEC-007) and never once a key exists.  Key-exchange
answers go to the source of the frame they answer; nothing unauthenticated
ever makes us send to another address.

Test-only key log: ``key_log=`` (off by default) hands every derived PILS key to a callback so captures can
be decrypted; it defeats key wiping (SEC-010).  The file format is in :mod:`pilot_proto.tunnel.dangerous`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pilot_proto.errors import Action, ErrorCode, LocalProtocolError, PilotError, RemoteProtocolError
from pilot_proto.sansio import Address, Datagram, Event, InputRejected
from pilot_proto.tunnel.admission import KexAdmission
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

__all__ = ["KEX_FLAG_REQUEST", "KEX_FLAG_RESPONSE", "KeyLogHook", "Rng", "TunnelEndpoint", "parse_pila_trailer"]

#: Source of cryptographically secure random bytes, injected by the driver (``os.urandom`` in production).
Rng = Callable[[int], bytes]
PeerKeys = Callable[[int], bytes | None] | Mapping[int, bytes]
#: ``(our node, peer node, 32-byte PILS key)``: the test-only key-log hook of :class:`TunnelEndpoint`.
KeyLogHook = Callable[[int, int, bytes], None]

_new_tuple = tuple.__new__
#: Shortest PILS frame: magic, sender, nonce and the GCM tag (draft 7.2).
_PILS_MIN = 4 + 4 + 12 + 16

#: GoC PILA trailer flags (E-PILA-1, E-TNL-3): the sender asks for an answer / the frame is an answer.
KEX_FLAG_REQUEST = 1 << 0
KEX_FLAG_RESPONSE = 1 << 1


def parse_pila_trailer(trailer: bytes) -> tuple[int, int]:
    """``(caps, flags)`` from a GoC PILA trailer: ``uvarint(caps) [uvarint(flags)]``; unreadable parts are 0."""

    def uvarint(data: bytes, pos: int) -> tuple[int, int] | None:
        value = shift = 0
        while pos < len(data) and shift < 64:
            byte = data[pos]
            value |= (byte & 0x7F) << shift
            pos += 1
            if not byte & 0x80:
                return value, pos
            shift += 7
        return None

    first = uvarint(trailer, 0)
    if first is None:
        return 0, 0
    caps, pos = first
    second = uvarint(trailer, pos)
    return caps, (second[0] if second is not None else 0)


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
        key_log: KeyLogHook | None = None,
    ) -> None:
        self.node_id = node_id
        #: TEST-ONLY, off by default: called as ``key_log(our_node, peer_node, key)`` with every PILS session key
        #: this endpoint derives (one key serves both directions; the two nonce prefixes differ, E-NONCE-3).  It
        #: exists so captures can be decrypted (:class:`pilot_proto.tunnel.dangerous.KeyLog` is the file writer).
        #: Enabling it DEFEATS key wiping (SEC-010): the key leaves the wiped buffer as immutable ``bytes`` and
        #: whoever reads the log can read the sessions.  Keys of tentative sessions are reported too.
        self.key_log = key_log
        self.config = cfg = config or TunnelConfig.for_profile()
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
        self._queued_rejections = 0
        #: Statistics beside the events: rejections by error code, and rejections not queued (flood, no reader).
        self.stats: dict[str, int] = {}
        self._admission = KexAdmission(
            per_source_rate=cfg.kex_rate_per_source,
            per_source_burst=2 * cfg.kex_rate_per_source,
            known_rate=cfg.kex_rate_known,
            unknown_rate=cfg.kex_rate_unknown,
            max_sources=cfg.kex_sources,
        )
        self._inbound_peers = 0
        #: Peers with a key offer pending (what the timer looks at); pruned lazily.
        self._offering: dict[int, PeerTunnel] = {}
        self._node_bytes = node_id.to_bytes(4, "big")
        self._static_key: X25519PrivateKey | None = None
        if not cfg.ephemeral_per_session:
            self._static_key = X25519PrivateKey.from_private_bytes(self._random(32))

    # -- configuration ---------------------------------------------------------------------------------

    def add_peer(self, node: int, address: Address) -> PeerTunnel:
        """Record (or move) the underlay address of ``node``; a configured peer is never evicted."""
        peer = self._peer(node, 0.0)
        if not peer.configured:
            peer.configured = True
            self._inbound_peers -= 1
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

    def allow_plaintext(self, node: int) -> None:
        """Put the plaintext fallback for ``node`` in force now (draft 10.2, made explicit; E-TNL-2).

        Only meaningful before a key exists: once the pair shares a key, PILT is refused both ways (SEC-005).
        """
        peer = self.peers.get(node)
        if peer is None or peer.address is None:
            raise LocalProtocolError(ErrorCode.UNKNOWN_PEER, f"no underlay address for node {node}", field="peer")
        peer.plaintext_mode = True

    # -- outputs ---------------------------------------------------------------------------------------

    def datagrams_to_send(self) -> list[Datagram]:
        """Drain the datagrams queued since the last call."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> Event | None:
        """Next :class:`KeyEstablished`, :class:`Rekeyed`, :class:`PacketReceived`, :class:`KeyExchangeFailed`
        or :class:`~pilot_proto.sansio.InputRejected`, or ``None``."""
        if not self._events:
            return None
        ev = self._events.popleft()
        if type(ev) is InputRejected:
            self._queued_rejections -= 1
        return ev

    def get_timer(self) -> float | None:
        """Earliest key-offer retransmission; only peers with an offer pending are looked at (not every peer)."""
        offering = self._offering
        if not offering:
            return None  # the steady state: no key offer pending (asked once per driver wake-up)
        for node in [n for n, p in offering.items() if p.offer_next is None or self.peers.get(n) is not p]:
            del offering[node]
        deadlines = [p.offer_next for p in offering.values() if p.offer_next is not None]
        return min(deadlines) if deadlines else None

    # -- sending ---------------------------------------------------------------------------------------

    def send(self, node: int, packet: bytes | Packet, now: float) -> None:
        """Send one packet to ``node``: PILS if keyed, else start a key exchange and queue it."""
        if type(packet) is Packet:  # the steady state: keyed, no offer pending, far from the limit; one C call
            peer = self.peers.get(node)
            if peer is not None and peer.sessions and peer.offer_private is None and peer.address is not None:
                sealer = peer.sessions[0].sealer
                if sealer.counter < sealer.rekey_at:
                    frame = sealer.seal_packet(packet)  # None (nothing sealed) unless encode_packet's plain case
                    if frame is not None:
                        self._outbox.append(_new_tuple(Datagram, (frame, peer.address)))
                        return
        # encode_packet raises for fields that do not fit; then the source node is bytes 6..9, compared as encoded
        # (what goes on the wire, and what the C path compares too)
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
        sessions = peer.sessions
        if sessions and peer.offer_private is None:  # fast path: keyed, no offer pending, far from the limit
            sealer = sessions[0].sealer
            if sealer.counter < sealer.rekey_at:
                self._outbox.append(_new_tuple(Datagram, (sealer.seal(data), peer.address)))  # no NamedTuple frame
                return
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
        for peer in list(self._offering.values()):
            if peer.offer_next is None or peer.offer_next > now or self.peers.get(peer.node) is not peer:
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
            self._rejected(exc, data, addr, now)

    def receive_packet_fast(self, data: bytes, addr: Address, now: float) -> Packet | None:
        """:meth:`receive_datagram` for a caller that wants the inner packet itself rather than a ``PacketReceived``.

        A PILS frame that opens under the sender's live session (the steady state of every tunnel) returns its
        inner packet, with exactly the state changes :meth:`receive_datagram` makes for it and no event.  Any
        other datagram -- a key exchange, PILT, an older or tentative session, a forgery -- goes through
        :meth:`receive_datagram` unchanged (its events are queued as usual) and ``None`` is returned.
        """
        # The steady state first: the C call checks the magic, the cleartext sender, the length, the nonce order,
        # the tag, the inner source and the CRC, so nothing is sliced or compared here before it (None: not taken).
        peer = self.peers.get(int.from_bytes(data[4:8], "big"))
        if peer is not None and peer.sessions and peer.node != self.node_id:
            session = peer.sessions[0]
            packet = session.opener.open_packet(data)  # open and decode in one call, or None with nothing changed
            if packet is not None:
                self._opened(peer, session, data[8:12], addr, now)
                return packet
        if data[:4] == b"PILS" and len(data) >= _PILS_MIN:
            sender = data[4:8]
            peer = self.peers.get(int.from_bytes(sender, "big"))
            if peer is not None and peer.sessions and sender != self._node_bytes:
                session = peer.sessions[0]
                opener = session.opener
                try:
                    plaintext = opener.open_frame(data)  # commits the nonce only on success
                except RemoteProtocolError:
                    pass  # the full path tries the other sessions and reports the right error
                else:
                    try:
                        packet = decode_packet(plaintext, self.config.profile, check_version=False)
                    except PilotError as exc:  # authenticated, so the counter stays consumed (as in _on_pils)
                        self._rejected(exc, data, addr, now)
                        return None
                    self._opened(peer, session, data[8:12], addr, now)
                    return packet
        self.receive_datagram(data, addr, now)
        return None

    def _rejected(self, exc: PilotError, data: bytes, addr: Address, now: float) -> None:
        """The one place a refused datagram is reported (one ``InputRejected``) and its action carried out."""
        exc.__traceback__ = None  # the event keeps the error, not the frames (and datagrams) it was raised in
        peer = int.from_bytes(data[4:8], "big") if len(data) >= 8 and data[:4] != b"PILT" else None
        stats = self.stats
        stats[exc.code.value] = stats.get(exc.code.value, 0) + 1
        if self._queued_rejections < self.config.max_queued_rejections:
            self._queued_rejections += 1
            self._events.append(InputRejected(exc, "tunnel", addr, len(data), peer))
        else:
            stats["rejections_unreported"] = stats.get("rejections_unreported", 0) + 1
        self._act(exc, peer, now)

    def _act(self, error: PilotError, peer: int | None, now: float) -> None:
        """The one place where the action of a refused datagram is carried out (issue 8).

        ``DROP``: nothing more.  ``REKEY``: offer a fresh key to the *known* address of an existing peer
        (never to the datagram's source).  ``CLOSE``: forget the peer's sessions.  ``RST`` is the session
        layer's; a tunnel never emits it (inner packets with a bad version go up so the stream layer can
        answer, draft 12.2).  No error raised for unauthenticated input carries anything but ``DROP``, so
        no forged datagram can make us re-key, close or send.
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
            known.tentative.clear()
            known.clear_offer()

    def _receive(self, data: bytes, address: Address, now: float) -> list[Event]:
        if data[:4] == b"PILS" and len(data) >= _PILS_MIN and data[4:8] != self._node_bytes:
            # the common case, without building a frame object (decode_frame would check the same length)
            return self._on_pils(EncryptedFrame(int.from_bytes(data[4:8], "big"), data[8:20], data[20:]), address, now)
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
                raise RemoteProtocolError(
                    ErrorCode.TRAILING_DATA, "bytes after PILA", field="pila.trailer", section="7.4"
                )
            self._refuse_stale(frame.sender, frame.x25519_public)
            self._admit_kex(frame.sender, address, now)
            verify_auth_kex(frame, self.known_key(frame.sender))
            flags = parse_pila_trailer(frame.trailer)[1] if frame.trailer else 0
            return self._on_kex(frame.sender, frame.x25519_public, True, address, now, flags)
        if isinstance(frame, KeyExchangeFrame):
            self._check_pilk(frame.sender)
            self._refuse_stale(frame.sender, frame.x25519_public)
            self._admit_kex(frame.sender, address, now)
            return self._on_kex(frame.sender, frame.x25519_public, False, address, now, 0)
        if isinstance(frame, PlaintextFrame):
            return self._on_pilt(frame, address)
        return []  # PILP: nothing to do at this layer (draft 7.5)

    def _refuse_stale(self, node: int, key: bytes) -> None:
        """A key the peer used before and no longer uses is stale: refused before it costs a signature check or
        a token (the outcome would be the same after them), so replays cannot spend a real peer's budget."""
        peer = self.peers.get(node)
        if peer is None or key not in peer.key_history:
            return
        active = peer.active
        if active is not None and active.peer_public == key:
            return
        if any(t.peer_public == key for t in peer.tentative):
            return
        raise _stale(node)

    def _admit_kex(self, node: int, address: Address, now: float) -> None:
        """Pay for one inbound key exchange before any crypto runs (issue 9).  Raises ``RATE_LIMITED``."""
        peer = self.peers.get(node)
        known = peer is not None and (peer.configured or bool(peer.sessions))
        verdict = self._admission.admit(address, known, now)
        if verdict is not None:
            raise RemoteProtocolError(
                ErrorCode.RATE_LIMITED,
                f"key-exchange budget ({verdict}) exhausted; X25519 work per second is bounded",
                field="kex",
                section="10.8",
            )

    def _on_pils(self, frame: EncryptedFrame, address: Address, now: float) -> list[Event]:
        peer = self.peers.get(frame.sender)
        if peer is None or not (peer.sessions or peer.tentative):
            raise RemoteProtocolError(
                ErrorCode.NO_SESSION_KEY,
                f"no session key for sender {frame.sender}",
                field="pils.sender",
                section="7.2",
                requirement="TUN-012",
            )
        first_error: RemoteProtocolError | None = None
        opened: Session | None = None
        for session in peer.sessions:
            try:
                plaintext = session.opener.open(frame.nonce, frame.ciphertext)
            except RemoteProtocolError as exc:
                if first_error is None or first_error.code is ErrorCode.AUTH_FAILED:
                    first_error = exc
                continue
            opened = session
            break
        else:
            for session in peer.tentative:
                try:
                    plaintext = session.opener.open(frame.nonce, frame.ciphertext)  # commits only on success
                except RemoteProtocolError:
                    continue
                return self._promote(peer, session, plaintext, address)
            assert first_error is not None
            if first_error.code is ErrorCode.AUTH_FAILED and self._sealed_under_offer(peer, frame):
                # The peer switched to the key our re-key offer implies before its answer reached us (E-KEX-2):
                # the tag proves it holds that key, so complete the exchange as its answer would have.
                active = peer.active
                assert active is not None
                events = self._on_kex(peer.node, active.peer_public, active.authenticated, address, now, 0)
                return events + self._on_pils(frame, address, now)
            raise first_error
        # authenticated from here: the counter is consumed even if the inner packet is malformed
        packet = decode_packet(plaintext, self.config.profile, check_version=False)  # the stream layer RSTs (12.2)
        self._opened(peer, opened, frame.nonce[:4], address, now)
        return [PacketReceived(frame.sender, packet, address, True)]

    def _opened(self, peer: PeerTunnel, session: Session, prefix: bytes, address: Address, now: float) -> None:
        """What an established session's authenticated PILS frame changes (both receive paths come here): the
        peer is confirmed, the session has received, and under the live key the sender's address is its endpoint
        (E-TNL-1) and a nonce prefix shared by both directions starts a re-key (E-NONCE-3)."""
        peer.confirmed = True
        session.rx = True
        if session is peer.sessions[0]:
            peer.address = address
            if prefix == session.sealer.prefix and peer.offer_private is None:
                self._offer(peer, now)

    def _promote(self, peer: PeerTunnel, session: Session, plaintext: bytes, address: Address) -> list[Event]:
        """A PILS frame proved a tentative session: it becomes the live one and the endpoint moves (E-TNL-1)."""
        packet = decode_packet(plaintext, self.config.profile, check_version=False)
        peer.tentative.remove(session)
        first = not peer.sessions
        session.rx = True
        session.first = first
        self._install(peer, session)
        peer.tentative.clear()  # older tentatives lost to a newer, proven key
        peer.confirmed = True
        peer.address = address
        peer.plaintext_mode = False
        peer.authenticated_once = peer.authenticated_once or session.authenticated
        event: Event
        if first:
            event = KeyEstablished(peer.node, session.authenticated, address)
        else:
            event = Rekeyed(peer.node, session.authenticated, address, "peer proved a new key")
        self._flush_pending(peer, session)
        return [event, PacketReceived(peer.node, packet, address, True)]

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

    def _on_kex(
        self, node: int, peer_public: bytes, authenticated: bool, address: Address, now: float, flags: int
    ) -> list[Event]:
        """A verified PILA (``authenticated``) or an acceptable PILK carrying ``peer_public`` (E-TNL-1).

        Order of the rules: a repeat of the live key is answered (rate-limited) and changes nothing; a key the
        peer used before is stale; a repeat of a tentative key is answered again; an anonymous key for a live
        session from another address is refused.  Then the answer to our pending offer installs the new session
        at once; anything else with a live session is *tentative*; the first session of a peer is installed.
        """
        cfg = self.config
        peer = self.peers.get(node)
        active = peer.active if peer is not None else None
        if peer is not None and active is not None and active.peer_public == peer_public:
            if active.authenticated and not authenticated:
                raise RemoteProtocolError(
                    ErrorCode.AUTH_REQUIRED, "PILK repeating a PILA-authenticated key", field="pilk", section="10.4",
                    requirement="SEC-029",
                )  # fmt: skip
            if peer.offer_private is None or not cfg.answer_may_repeat_key:
                # the same key again: the peer may have missed our answer; answer, rate-limited, change nothing else.
                # Under the draft it never answers our offer: a fresh answer carries a fresh key, and a replayed
                # frame would otherwise complete our offer with a key the peer is no longer pairing with (E-TNL-1).
                self._answer_again(peer, active.our_public, address, now, flags)
                return []
        elif peer is not None:
            if peer.offer_private is not None and any(t.peer_public == peer_public for t in peer.tentative):
                pass  # both offered at once and we took theirs as tentative first: it answers our offer too
            elif peer_public in peer.key_history:
                raise _stale(node)
            for candidate in peer.tentative if peer.offer_private is None else ():
                if candidate.peer_public == peer_public:
                    if candidate.authenticated and not authenticated:
                        raise RemoteProtocolError(
                            ErrorCode.AUTH_REQUIRED, "PILK repeating a PILA-authenticated key", field="pilk",
                            section="10.4", requirement="SEC-029",
                        )  # fmt: skip
                    self._answer_again(peer, candidate.our_public, address, now, flags)
                    return []
            if active is not None and not authenticated and address != peer.address:
                raise RemoteProtocolError(
                    ErrorCode.SPOOFED,
                    f"anonymous key exchange for node {node}'s live session from another address",
                    field="pilk.sender",
                    section="10.4",
                )
        answering_offer = peer is not None and peer.offer_private is not None
        if peer is not None and peer.offer_private is not None:
            private, our_public, reply = peer.offer_private, peer.offer_public, False
        elif (
            not cfg.confirm_new_keys
            and peer is not None
            and peer.answer_private is not None
            and peer.answer_at is not None
            and now - peer.answer_at < cfg.kex_answer_interval
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
        if self.key_log is not None:
            self.key_log(self.node_id, node, bytes(key))  # test-only: defeats SEC-010 (see __init__)
        cipher = SessionCipher(key)  # wipes key
        if peer is None:
            self._make_room(now)  # raises TABLE_FULL before any state changes
        peer = self._peer(node, now)
        if peer.address is None:
            peer.address = address  # a peer we had no address for; a key exchange never *moves* one (E-TNL-1)
        session = Session(
            cipher=cipher,
            sealer=PilsSealer(
                cipher,
                self.node_id,
                self._prefix(node),
                counter_start=cfg.counter_start,
                limit=cfg.counter_limit,
                rekey_margin=cfg.rekey_margin,
            ),
            opener=PilsOpener(cipher, node, window_size=cfg.replay_window, max_prefixes=cfg.max_prefixes),
            our_public=our_public,
            peer_public=bytes(peer_public),
            authenticated=authenticated,
            established_at=now,
        )
        peer.remember_key(session.peer_public, cfg.key_history)
        peer.answer_private, peer.answer_at = (private, now) if reply else (None, None)
        if reply:
            peer.last_answer = now
            self._send_kex(peer, our_public, address)
        previous = peer.active
        if previous is not None and not answering_offer and cfg.confirm_new_keys:
            peer.tentative.append(session)  # would replace a live session: wait for a PILS frame proving it
            del peer.tentative[: -cfg.max_tentative]
            return []
        session.first = previous is None
        self._install(peer, session)
        peer.clear_offer()
        peer.plaintext_mode = False
        peer.authenticated_once = peer.authenticated_once or authenticated
        events: list[Event]
        if previous is None:
            events = [KeyEstablished(node, authenticated, peer.address)]
        else:
            reason = "our key offer was answered" if answering_offer else "peer offered a new key"
            if previous.sealer.needs_rekey:
                reason = "nonce counter near its limit"
            events = [Rekeyed(node, authenticated, peer.address, reason)]
        self._flush_pending(peer, session)
        return events

    def _install(self, peer: PeerTunnel, session: Session) -> None:
        """Make ``session`` the live one; keep ``max_old_sessions`` predecessors for frames in flight, and
        always the newest one the peer has sealed under (it switches only when it sees our frames under the
        new key, so two quick re-keys must not drop the key it is still using)."""
        sessions = peer.sessions
        sessions.insert(0, session)
        keep = 1 + self.config.max_old_sessions
        if len(sessions) > keep:
            in_use = next((s for s in sessions[1:] if s.maybe_in_use), None)
            kept = sessions[:keep]
            if in_use is not None and in_use not in kept:
                kept[-1] = in_use
            sessions[:] = kept

    def _answer_again(self, peer: PeerTunnel, our_public: bytes, address: Address, now: float, flags: int) -> None:
        """Re-send our key for a key the peer repeated (it may have lost our answer), at most once per interval.

        A GoC frame flagged as an answer is never answered (E-TNL-3); one flagged as a request is, like any repeat.
        """
        if flags & KEX_FLAG_RESPONSE:
            return
        if peer.last_answer is None or now - peer.last_answer >= self.config.kex_answer_interval:
            peer.last_answer = now
            self._send_kex(peer, our_public, address)

    def _flush_pending(self, peer: PeerTunnel, session: Session) -> None:
        while peer.pending and peer.address is not None and not session.sealer.exhausted:
            self._outbox.append(Datagram(session.sealer.seal(peer.pending.popleft()), peer.address))

    def _on_pilt(self, frame: PlaintextFrame, address: Address) -> list[Event]:
        packet = decode_packet(frame.packet, self.config.profile, check_version=False)  # stream layer RSTs (12.2)
        node = packet.src.node
        cfg = self.config
        if not cfg.encryption:
            return [PacketReceived(node, packet, address, False)]
        peer = self.peers.get(node)
        if peer is not None and (peer.sessions or peer.tentative):
            reason = f"plaintext from node {node}, which shares a tunnel key with us"
        elif not cfg.accept_plaintext or peer is None or not peer.plaintext_mode:
            reason = f"encryption is on and no plaintext fallback is in force for node {node}"
        elif address != peer.address:
            reason = f"plaintext for node {node} from an address other than its known one"
        else:
            return [PacketReceived(node, packet, address, False)]
        raise RemoteProtocolError(
            ErrorCode.PLAINTEXT_REFUSED, reason, field="pilt", section="10.2", requirement="SEC-005"
        )

    # -- helpers ---------------------------------------------------------------------------------------

    def _peer(self, node: int, now: float) -> PeerTunnel:
        peer = self.peers.get(node)
        if peer is None:
            peer = self.peers[node] = PeerTunnel(node, pending=deque(), created_at=now)
            self._inbound_peers += 1
        return peer

    def _make_room(self, now: float) -> None:
        """Keep peers created by inbound key exchanges under ``max_inbound_peers`` (issue 9).

        Evicts the oldest such peer that never sent an authenticated PILS frame; if every one has, the newcomer
        is refused, so a flood of first contacts never pushes out a peer that is actually talking to us.
        """
        if self._inbound_peers < self.config.max_inbound_peers:
            return
        victim = None
        for peer in self.peers.values():  # insertion order = creation order
            if not peer.configured and not peer.confirmed:
                victim = peer
                break
        if victim is None:
            raise RemoteProtocolError(
                ErrorCode.TABLE_FULL,
                f"{self._inbound_peers} inbound tunnel peers, all with authenticated traffic; no room for another",
                field="kex.sender",
                section="10.8",
            )
        del self.peers[victim.node]
        self._inbound_peers -= 1
        self.stats["peers_evicted"] = self.stats.get("peers_evicted", 0) + 1

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
        self._offering[peer.node] = peer
        active = peer.active
        if self.config.anticipate_rekey and active is not None:
            secret = x25519_shared_secret(private, active.peer_public)
            key = derive_tunnel_key(secret)
            wipe(secret)
            if self.key_log is not None:
                self.key_log(self.node_id, peer.node, bytes(key))  # test-only: defeats SEC-010 (see __init__)
            peer.offer_candidate = SessionCipher(key)  # wipes the key buffer
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


def _stale(node: int) -> RemoteProtocolError:
    return RemoteProtocolError(
        ErrorCode.REPLAY,
        f"key exchange repeats an earlier X25519 key of node {node} (stale or replayed)",
        field="kex.x25519",
        section="10.3",
    )

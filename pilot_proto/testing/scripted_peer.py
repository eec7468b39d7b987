"""A scripted Pilot peer on a real UDP socket: sends exactly what it is told, records everything it sees.

TEST-ONLY (it keeps session keys in plain ``bytes``; see :mod:`pilot_proto.tunnel.dangerous`).
:class:`ScriptedPeer` is the stimulus side of a conformance test.  It binds a blocking UDP socket on
127.0.0.1, runs a real tunnel (PILK, or PILA when given an :class:`~pilot_proto.tunnel.Identity`) to
one target ``HOST:PORT`` (an IP literal; nothing is resolved), learns the target's node ID -- and,
under PILA, its Ed25519 key -- from its reply when not given, and then:

* sends exactly the inner packets it is told (:meth:`send_packet`: PILS under the session, or
  PILT), or any bytes at all (:meth:`send_raw`, e.g. frames from :mod:`pilot_proto.tunnel.dangerous`
  or :mod:`pilot_proto.wire.raw`);
* records every datagram in and out as a :class:`Record` (monotonic time, direction, raw bytes, the
  decoded frame, the decrypted inner packet or the error that stopped it);
* answers nothing on its own: no ACK, no re-key, no reply to a repeated key exchange.  Helpers do
  that when asked (:meth:`ack`, :meth:`answer_kex`, :meth:`rekey`), and :attr:`responder` is an
  opt-in hook called for every incoming record (:func:`ack_responder` is a tiny one).

Every wait is bounded (``timeout`` seconds, ``expect`` returns ``None`` when it runs out).  No
asyncio is needed: the peer is driven from plain test code, the target runs wherever it runs (a
subprocess, :class:`pilot_proto.drivers.udp.BackgroundNode`, another implementation)::

    with ScriptedPeer(0x51, ("127.0.0.1", port)) as peer:
        node = peer.handshake()
        peer.send_packet(peer.packet(Flags.SYN, dst_port=7, seq=100))
        rec = peer.expect_packet(lambda p: p.has(Flags.SYN) and p.has(Flags.ACK), timeout=2)

The crypto is the tunnel's own (X25519 + HKDF in :mod:`pilot_proto.tunnel.kdf`, sealing and replay
windows in :mod:`pilot_proto.tunnel.aead`, PILA signing in :mod:`pilot_proto.tunnel.identity`).
:class:`~pilot_proto.tunnel.TunnelEndpoint` itself is not used because it answers key exchanges
and re-keys by itself, which a scripted peer must never do.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from pilot_proto.errors import ErrorCode, PilotError, RemoteProtocolError
from pilot_proto.profile import Profile
from pilot_proto.sansio import InputRejected
from pilot_proto.testing.tap import DatagramTap
from pilot_proto.tunnel.aead import PilsOpener, PilsSealer, SessionCipher
from pilot_proto.tunnel.dangerous import KeyLog, derive_session_key, open_pils, seal_pils
from pilot_proto.tunnel.identity import Identity, NodeIdentity, verify_auth_kex
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import (
    AuthKeyExchangeFrame,
    EncryptedFrame,
    Frame,
    KeyExchangeFrame,
    PlaintextFrame,
    decode_frame,
    encode_frame,
    is_beacon_message,
)
from pilot_proto.wire.header import Flags, Packet, PacketProtocol, decode_packet, encode_packet

__all__ = ["Record", "ScriptedPeer", "ack_responder", "rejection_code", "seq_add"]

Direction = Literal["in", "out"]
UdpAddr = tuple[str, int]


def rejection_code(event: object) -> ErrorCode | None:
    """The ErrorCode of a :class:`~pilot_proto.sansio.InputRejected` event, else None."""
    return event.error.code if isinstance(event, InputRejected) else None


def seq_add(seq: int, n: int) -> int:
    """Sequence arithmetic modulo 2**32 (draft 8.2)."""
    return (seq + n) & 0xFFFFFFFF


@dataclass(slots=True, eq=False)
class Record:
    """One datagram the peer sent or received.

    ``frame`` is the decoded tunnel frame (``None`` for beacon messages and undecodable bytes),
    ``packet`` the inner packet (decrypted PILS, or PILT), ``error`` the :class:`PilotError` that
    stopped decoding or decryption.  ``consumed`` is set once :meth:`ScriptedPeer.expect` returned it.
    """

    time: float
    direction: Direction
    addr: UdpAddr
    data: bytes
    frame: Frame | None = None
    packet: Packet | None = None
    error: PilotError | None = None
    consumed: bool = False

    @property
    def kind(self) -> str:
        """``PILS``, ``PILK``, ... for frames, ``beacon`` for beacon messages, ``?`` otherwise."""
        if is_beacon_message(self.data):
            return "beacon"
        magic = self.data[:4]
        return magic.decode("ascii") if magic in (b"PILT", b"PILS", b"PILK", b"PILA", b"PILP") else "?"

    def describe(self) -> str:
        what = self.packet.describe() if self.packet is not None else (str(self.error) if self.error else "")
        return f"{self.time:.6f} {self.direction:3} {self.kind} {len(self.data)} B {what}"


@dataclass(slots=True, eq=False)
class _Session:
    key: bytes
    sealer: PilsSealer
    opener: PilsOpener
    our_public: bytes
    peer_public: bytes


@dataclass
class _KexOffer:
    private: X25519PrivateKey
    public: bytes
    frame: bytes
    sent_at: float = 0.0
    attempts: int = 0
    replies: list[Record] = field(default_factory=list)


def _ip_literal(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise ValueError(f"target host must be an IP literal (nothing is resolved), got {host!r}") from None


class ScriptedPeer:
    """A tunnel peer of one target, driven step by step from test code (see the module docstring).

    Args:
        node_id: our node ID (the PILS sender and the inner source node).
        target: the target's UDP ``(host, port)``; host is an IP literal.  ``None`` for dialer mode:
            :meth:`accept_handshake` takes the address of whoever keys with us first.
        profile: ``draft`` or ``go-interop`` (first nonce counter 0 or 1, erratum E-NONCE-1; lenient
            frame decoding under go-interop).
        identity: sign our key exchange (PILA) with it; without one we send PILK.
        target_node_id / target_key: expected node ID and Ed25519 key of the target; learned from its
            reply when ``None`` (a PILA reply is then verified with the key it carries).
        network: network ID of our and the target's virtual address.
        rng: random bytes (X25519 keys, nonce prefixes); ``os.urandom`` unless a test needs repeatability.
        tap: optional :class:`~pilot_proto.testing.tap.Tap` told about every datagram in and out.
        keylog: optional :class:`~pilot_proto.tunnel.dangerous.KeyLog` every session key is written to.
        max_records: bound on :attr:`records` (oldest dropped first).
    """

    def __init__(
        self,
        node_id: int,
        target: tuple[str, int] | None,
        *,
        profile: Profile | str = Profile.DRAFT,
        identity: Identity | None = None,
        target_node_id: int | None = None,
        target_key: bytes | None = None,
        network: int = 0,
        rng: Callable[[int], bytes] = os.urandom,
        tap: DatagramTap | None = None,
        keylog: KeyLog | None = None,
        bind: tuple[str, int] = ("127.0.0.1", 0),
        max_records: int = 100_000,
    ) -> None:
        self.node_id = node_id
        self.target: UdpAddr | None = (_ip_literal(target[0]), int(target[1])) if target is not None else None
        self.profile = Profile.parse(profile)
        self.identity = NodeIdentity(node_id, identity) if identity is not None else None
        self.target_node_id = target_node_id
        self.target_key = target_key
        self.network = network
        self.rng = rng
        self.tap = tap
        self.keylog = keylog
        self.records: deque[Record] = deque(maxlen=max_records)
        #: Called with every incoming record once it is decoded (opt-in; see :func:`ack_responder`).
        self.responder: Callable[[ScriptedPeer, Record], None] | None = None
        self.sessions: list[_Session] = []  # newest first
        self._offer: _KexOffer | None = None
        family_of = self.target[0] if self.target is not None else _ip_literal(bind[0])
        v6 = ":" in family_of
        if v6 and bind[0] == "127.0.0.1":
            bind = ("::1", bind[1])  # the loopback of the target's family (an IPv6 socket cannot bind 127.0.0.1)
        self._sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((_ip_literal(bind[0]), bind[1]))
        except OSError:
            self._sock.close()
            raise
        host, port = self._sock.getsockname()[:2]
        self.address: UdpAddr = (str(host), int(port))

    # -- lifecycle --------------------------------------------------------------------------------------

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> ScriptedPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- addressing -------------------------------------------------------------------------------------

    def assign_node_id(self, node_id: int) -> None:
        """Take the node ID a registry gave us (registration needs :attr:`address` first); before any session."""
        if self.sessions:
            raise RuntimeError("the node ID is part of every PILS frame: assign it before the handshake")
        self.node_id = node_id
        if self.identity is not None:
            self.identity = NodeIdentity(node_id, self.identity.identity)

    @property
    def addr(self) -> Addr:
        return Addr(self.network, self.node_id)

    @property
    def target_addr(self) -> Addr:
        if self.target_node_id is None:
            raise RuntimeError("the target's node ID is not known yet: call handshake() first")
        return Addr(self.network, self.target_node_id)

    def packet(
        self,
        flags: int = 0,
        *,
        dst_port: int,
        src_port: int = 49152,
        seq: int = 0,
        ack: int = 0,
        window: int = 512,
        payload: bytes = b"",
        protocol: int = PacketProtocol.STREAM,
        dst: Addr | None = None,
        src: Addr | None = None,
    ) -> Packet:
        """An inner packet from us to the target (override ``src``/``dst`` to lie about addresses)."""
        return Packet(
            int(flags),
            int(protocol),
            src or self.addr,
            dst or self.target_addr,
            src_port,
            dst_port,
            seq,
            ack,
            window,
            payload,
        )

    # -- key exchange -----------------------------------------------------------------------------------

    @property
    def session_key(self) -> bytes | None:
        """The current session's AES-256-GCM key (for crafted frames and key logs)."""
        return self.sessions[0].key if self.sessions else None

    def _kex_frame(self, public: bytes) -> bytes:
        if self.identity is not None:
            return encode_frame(self.identity.auth_kex_frame(public))
        return encode_frame(KeyExchangeFrame(self.node_id, public))

    def _new_offer(self) -> _KexOffer:
        private = X25519PrivateKey.from_private_bytes(bytes(self.rng(32)))
        public = private.public_key().public_bytes_raw()
        return _KexOffer(private, public, self._kex_frame(public))

    def handshake(self, timeout: float = 5.0, retry: float = 1.0) -> int:
        """Offer a fresh X25519 key (PILK/PILA), resend every ``retry`` s, install the session from the reply.

        Returns the target's node ID.  Calling it again is a re-key we start.  TimeoutError if no
        acceptable reply came within ``timeout`` (the rejected replies are in :attr:`records`).
        """
        offer = self._offer = self._new_offer()
        deadline = time.monotonic() + timeout
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise TimeoutError(
                        f"no key-exchange reply from {self._target()[0]}:{self._target()[1]} within {timeout} s "
                        f"({offer.attempts} offers sent)"
                    )
                if offer.attempts == 0 or now - offer.sent_at >= retry:
                    offer.attempts += 1
                    offer.sent_at = now
                    self.send_raw(offer.frame)
                rec = self.expect(
                    lambda r: isinstance(r.frame, KeyExchangeFrame | AuthKeyExchangeFrame) and r.error is None,
                    timeout=min(deadline, offer.sent_at + retry) - time.monotonic(),
                )
                if rec is not None:
                    self._install(offer.private, offer.public, rec)
                    assert self.target_node_id is not None
                    return self.target_node_id
        finally:
            self._offer = None

    def rekey(self, timeout: float = 5.0) -> int:
        """Start a new key exchange now (same as :meth:`handshake`)."""
        return self.handshake(timeout)

    def _target(self) -> UdpAddr:
        if self.target is None:
            raise RuntimeError("no target address yet: give one, or call accept_handshake() first (dialer mode)")
        return self.target

    def accept_handshake(self, timeout: float = 5.0) -> int:
        """Dialer mode: wait for the implementation to key a tunnel with us, answer it, and return its node ID.

        The first acceptable PILK/PILA from any address makes its source the target (when none was
        given) -- the way a conformance run judges the initiator side (issue 10's dialer tests).
        """
        rec = self.expect(
            lambda r: (
                isinstance(r.frame, KeyExchangeFrame | AuthKeyExchangeFrame)
                and r.error is None
                and (self.target is None or r.addr == self.target)
            ),
            timeout,
        )
        if rec is None:
            raise TimeoutError(f"no key exchange reached {self.address[0]}:{self.address[1]} within {timeout} s")
        if self.target is None:
            self.target = rec.addr
        self.answer_kex(rec)
        assert self.target_node_id is not None
        return self.target_node_id

    def answer_kex(self, rec: Record) -> None:
        """Answer a key-exchange frame the target sent (e.g. its re-key) with a fresh key; install the session."""
        if not isinstance(rec.frame, KeyExchangeFrame | AuthKeyExchangeFrame) or rec.error is not None:
            raise ValueError("not an acceptable key-exchange record")
        offer = self._new_offer()
        self._install(offer.private, offer.public, rec)
        self.send_raw(offer.frame)

    def _install(self, private: X25519PrivateKey, our_public: bytes, rec: Record) -> None:
        frame = rec.frame
        assert isinstance(frame, KeyExchangeFrame | AuthKeyExchangeFrame)
        rec.consumed = True
        if self.target_node_id is None:
            self.target_node_id = frame.sender
        if isinstance(frame, AuthKeyExchangeFrame) and self.target_key is None:
            self.target_key = frame.ed25519_public  # learned (trust on first use), checked below
        key = derive_session_key(private.private_bytes_raw(), frame.x25519_public)
        if self.keylog is not None:
            self.keylog.write(self.node_id, frame.sender, key)
        cipher = SessionCipher(bytearray(key))
        start = 1 if self.profile is Profile.GO_INTEROP else 0
        session = _Session(
            key=key,
            sealer=PilsSealer(cipher, self.node_id, bytes(self.rng(4)), counter_start=start),
            opener=PilsOpener(cipher, frame.sender),
            our_public=our_public,
            peer_public=frame.x25519_public,
        )
        self.sessions.insert(0, session)
        del self.sessions[2:]

    # -- sending ----------------------------------------------------------------------------------------

    def send_raw(self, datagram: bytes) -> Record:
        """Send any bytes to the target as one datagram (outside the tunnel's rules)."""
        data = bytes(datagram)
        rec = self._record("out", data)
        self._sock.sendto(data, self._target())
        return rec

    def send_packet(self, pkt: Packet | bytes, *, encrypted: bool = True) -> Record:
        """Send one inner packet: PILS under the current session (next counter), or PILT when not ``encrypted``.

        ``pkt`` may be raw bytes (e.g. from :mod:`pilot_proto.wire.raw`) to send a malformed packet.
        """
        data = encode_packet(pkt) if isinstance(pkt, Packet) else bytes(pkt)
        if not encrypted:
            return self.send_raw(encode_frame(PlaintextFrame(data)))
        if not self.sessions:
            raise RuntimeError("no tunnel session: call handshake() first (or send with encrypted=False)")
        return self.send_raw(self.sessions[0].sealer.seal(data))

    def seal(self, inner: bytes, **overrides: object) -> bytes:
        """A PILS frame under the current key that is NOT sent, with :func:`seal_pils` overrides.

        Without a ``counter``/``nonce`` override it takes the next counter of the session (so it never
        reuses one by accident); pass ``counter=`` to replay or skip on purpose.
        """
        if not self.sessions:
            raise RuntimeError("no tunnel session: call handshake() first")
        s = self.sessions[0]
        args: dict[str, object] = {"sender": self.node_id, "prefix": s.sealer.prefix}
        if "counter" not in overrides and "nonce" not in overrides:
            args["counter"] = int.from_bytes(s.sealer.next_nonce()[4:], "big")
        args.update(overrides)
        return seal_pils(s.key, inner, **args)  # type: ignore[arg-type]

    def ack(self, pkt: Packet, *, seq: int, window: int = 512, encrypted: bool = True) -> Packet:
        """Send a pure ACK for stream packet ``pkt`` (ack = its seq + payload + SYN/FIN); returns what was sent."""
        n = len(pkt.payload) + (1 if pkt.flags & Flags.SYN else 0) + (1 if pkt.flags & Flags.FIN else 0)
        out = Packet(
            int(Flags.ACK),
            pkt.protocol,
            pkt.dst,
            pkt.src,
            pkt.dst_port,
            pkt.src_port,
            seq,
            seq_add(pkt.seq, n),
            window,
        )
        self.send_packet(out, encrypted=encrypted)
        return out

    # -- receiving --------------------------------------------------------------------------------------

    def _record(self, direction: Direction, data: bytes, addr: UdpAddr | None = None) -> Record:
        rec = Record(time.monotonic(), direction, addr or self._target(), data)
        try:
            if not is_beacon_message(data):
                rec.frame = decode_frame(data, self.profile)
                if direction == "in":
                    self._open(rec)
                elif isinstance(rec.frame, PlaintextFrame):
                    rec.packet = decode_packet(rec.frame.packet, self.profile, check_version=False)
        except PilotError as exc:
            rec.error = exc
        if direction == "out" and isinstance(rec.frame, EncryptedFrame) and self.sessions:
            try:
                inner = open_pils(self.sessions[0].key, data)
                rec.packet = decode_packet(inner, self.profile, verify_checksum=False, check_version=False)
            except (PilotError, ValueError, InvalidTag):
                pass
        self.records.append(rec)
        if self.tap is not None:
            local = self.address
            self.tap.record(direction, local, rec.addr, data)
        return rec

    def _open(self, rec: Record) -> None:
        frame = rec.frame
        if isinstance(frame, PlaintextFrame):
            rec.packet = decode_packet(frame.packet, self.profile, check_version=False)
        elif isinstance(frame, EncryptedFrame):
            if not self.sessions or frame.sender != self.target_node_id:
                raise RemoteProtocolError(
                    ErrorCode.NO_SESSION_KEY, f"no session with sender {frame.sender}", field="pils.sender"
                )
            first: RemoteProtocolError | None = None
            for s in self.sessions:
                try:
                    inner = s.opener.open(frame.nonce, frame.ciphertext)
                except RemoteProtocolError as exc:
                    first = first or exc
                    continue
                rec.packet = decode_packet(inner, self.profile, check_version=False)
                return
            assert first is not None
            raise first
        elif isinstance(frame, AuthKeyExchangeFrame):
            if self.target_node_id is not None and frame.sender != self.target_node_id:
                raise RemoteProtocolError(ErrorCode.SPOOFED, f"PILA from node {frame.sender}", field="pila.sender")
            verify_auth_kex(frame, self.target_key if self.target_key is not None else frame.ed25519_public)
        elif (
            isinstance(frame, KeyExchangeFrame)
            and self.target_node_id is not None
            and frame.sender != self.target_node_id
        ):
            raise RemoteProtocolError(ErrorCode.SPOOFED, f"PILK from node {frame.sender}", field="pilk.sender")

    def _receive_once(self, timeout: float) -> Record | None:
        """Wait up to ``timeout`` s for one datagram from anywhere; record and return it."""
        self._sock.settimeout(max(timeout, 0.0) or 1e-6)
        try:
            data, addr = self._sock.recvfrom(65535)
        except (TimeoutError, BlockingIOError):
            return None
        rec = self._record("in", data, (str(addr[0]), int(addr[1])))
        if self.responder is not None:
            self.responder(self, rec)
        return rec

    def incoming(self) -> Iterator[Record]:
        return (r for r in self.records if r.direction == "in")

    def expect(self, predicate: Callable[[Record], bool], timeout: float = 2.0) -> Record | None:
        """The first incoming record not yet consumed that satisfies ``predicate``, waiting up to ``timeout`` s.

        Looks at what has already been recorded first, then at new datagrams; the match is marked
        ``consumed`` so the next call finds the next one.  ``None`` when the time runs out.
        """
        for rec in self.records:
            if rec.direction == "in" and not rec.consumed and predicate(rec):
                rec.consumed = True
                return rec
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            new = self._receive_once(left)
            if new is not None and not new.consumed and predicate(new):
                new.consumed = True
                return new
        return None

    def expect_packet(self, predicate: Callable[[Packet], bool], timeout: float = 2.0) -> Packet | None:
        """Like :meth:`expect` for inner packets (decrypted PILS or PILT); returns the packet."""
        rec = self.expect(lambda r: r.packet is not None and predicate(r.packet), timeout)
        return rec.packet if rec is not None else None

    def listen(self, duration: float) -> list[Record]:
        """Record everything that arrives for ``duration`` s (answering nothing); returns those records."""
        out: list[Record] = []
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            rec = self._receive_once(left)
            if rec is not None:
                out.append(rec)
        return out


def ack_responder(peer: ScriptedPeer, rec: Record, *, seq: Callable[[Packet], int] | None = None) -> None:
    """A tiny opt-in responder: ACK every stream packet that carries data, SYN or FIN.

    ``peer.responder = ack_responder``.  Our sequence number in those ACKs is the packet's ack
    field (what the target expects next from us) unless ``seq`` says otherwise.
    """
    pkt = rec.packet
    if pkt is None or pkt.protocol != PacketProtocol.STREAM or pkt.flags & Flags.RST:
        return
    if pkt.payload or pkt.flags & (Flags.SYN | Flags.FIN):
        peer.ack(pkt, seq=seq(pkt) if seq is not None else pkt.ack)

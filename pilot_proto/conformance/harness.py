"""The suite's scripted peer: a real UDP socket, a real tunnel to the target, and nothing automatic.

:class:`Peer` binds 127.0.0.1 (or ::1) on an ephemeral port, keys a tunnel with the target by PILK or
PILA (draft 7.3, 7.4, 10.3), and then sends exactly what a test tells it: well-formed or deliberately
broken frames and inner packets, with any nonce counter, sender, AAD or key (draft 7.2, 11).  It never
answers the target by itself; every datagram in and out goes to the test's :class:`WireLog`.

Every wait is bounded (``Target.scale`` multiplies them; ``--timeout-scale``), and reading stops after
:data:`MAX_DATAGRAMS_PER_WAIT` datagrams, so a mute, garbage-spewing or flooding target cannot hang a
run.  The crypto is built from the package's primitives (X25519 + HKDF ``pilot-tunnel-v1`` and
AES-256-GCM with AAD = sender ID), not from :class:`~pilot_proto.tunnel.TunnelEndpoint`, so a defect of
our own endpoint cannot hide the same defect in a target.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pilot_proto.conformance.verdicts import Inconclusive, Unsupported
from pilot_proto.conformance.wirelog import WireLog
from pilot_proto.errors import PilotError
from pilot_proto.profile import Profile
from pilot_proto.tunnel.identity import Identity
from pilot_proto.tunnel.kdf import derive_tunnel_key
from pilot_proto.wire.address import Addr
from pilot_proto.wire.frames import auth_kex_signed_message
from pilot_proto.wire.header import Flags, Packet, PacketProtocol, decode_packet, encode_packet

__all__ = [
    "MAX_DATAGRAMS_PER_WAIT",
    "Inbound",
    "Peer",
    "Stream",
    "Target",
    "TunnelKeys",
    "parse_endpoint",
    "raw_header",
]

MAX_DATAGRAMS_PER_WAIT = 5000
RCVBUF = 4 << 20  # bytes of socket receive buffer the harness asks for
SYN, ACK, FIN, RST = int(Flags.SYN), int(Flags.ACK), int(Flags.FIN), int(Flags.RST)
STREAM, DATAGRAM, CONTROL = int(PacketProtocol.STREAM), int(PacketProtocol.DATAGRAM), int(PacketProtocol.CONTROL)
MASK32 = 0xFFFFFFFF
_HDR = struct.Struct(">BBHHIHIHHIIHI")


def parse_endpoint(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` where HOST is an IP literal; a hostname is refused, never resolved."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT with an IP address, got {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address (the suite never resolves host names)") from None
    return str(ip), int(port)


@dataclass(frozen=True)
class Target:
    """The implementation under test."""

    host: str
    port: int
    profile: Profile = Profile.DRAFT
    node_id: int | None = None  # learned from its key-exchange answer when not given
    ed25519: bytes | None = None  # its Ed25519 key, to verify its PILA
    scale: float = 1.0  # --timeout-scale
    registry: tuple[str, int] | None = None
    builtin: bool = False
    #: Ed25519 identities the target will accept PILA from (builtin target: the suite's own, see plugin).
    trusted: dict[int, Identity] = field(default_factory=dict)
    #: Whether the target gates untrusted peers (draft 10.6, 10.7): known for the built-in node (``--builtin-trust``),
    #: None (learned from its answers) for any other target.
    gated: bool | None = None

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def counter_start(self) -> int:
        """First PILS nonce counter this profile expects (draft 11.1: 0; Go: 1, erratum E-NONCE-1)."""
        return 1 if self.profile is Profile.GO_INTEROP else 0


def raw_header(
    *,
    flags: int = 0,
    protocol: int = STREAM,
    src: Addr,
    dst: Addr,
    src_port: int = 0,
    dst_port: int = 0,
    seq: int = 0,
    ack: int = 0,
    window: int = 0,
    payload: bytes = b"",
    version: int = 1,
    length: int | None = None,
    crc: int | None = None,
    crc_delta: int = 0,
) -> bytes:
    """A packet with any version, flags, length or CRC (``crc=None``: the correct CRC, plus ``crc_delta``)."""
    b0 = ((version & 0xF) << 4) | (flags & 0xF)
    n = len(payload) if length is None else length
    head = _HDR.pack(b0, protocol, n & 0xFFFF, src.network, src.node, dst.network, dst.node, src_port, dst_port,
                     seq & MASK32, ack & MASK32, window, 0)  # fmt: skip
    if crc is None:
        crc = zlib.crc32(payload, zlib.crc32(head))
        crc = (crc + crc_delta) & MASK32
    return head[:30] + struct.pack(">I", crc) + payload


@dataclass
class TunnelKeys:
    """One keyed tunnel: the AEAD, our send prefix/counter, and what the target sent under it."""

    aead: AESGCM
    our_id: int
    target_id: int
    our_public: bytes
    target_public: bytes
    prefix: bytes
    counter: int
    authenticated: bool
    answer: bytes  # the target's key-exchange frame

    def nonce(self, counter: int | None = None, prefix: bytes | None = None) -> bytes:
        return (prefix if prefix is not None else self.prefix) + (
            self.counter if counter is None else counter
        ).to_bytes(8, "big")


@dataclass
class Inbound:
    """One PILS frame from the target that authenticated under our key."""

    t: float
    prefix: bytes
    counter: int
    packet: Packet | None
    error: str = ""  # the inner packet failed to decode (CRC, length ...)
    raw: bytes = b""  # the decrypted inner packet exactly as the target encoded it (header + payload)
    size: int = 0  # length of the whole datagram that carried it


class Peer:
    """The harness side of one test: socket, tunnel, log; sends only what it is told (see module doc)."""

    def __init__(
        self,
        target: Target,
        rng: random.Random,
        log: WireLog,
        *,
        node_id: int | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.target = target
        self.rng = rng
        self.log = log
        self.node_id = node_id if node_id is not None else 0x7C000000 | rng.getrandbits(24)
        self.identity = identity
        family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):  # room for a target's full-window burst (the kernel caps it at rmem_max)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.local = self.sock.getsockname()[:2]
        self.keys: TunnelKeys | None = None
        self.old_keys: list[TunnelKeys] = []
        self.inbound: list[Inbound] = []  # every authenticated PILS frame from the target, in order
        self.other: list[bytes] = []  # datagrams from the target that are not PILS under a key we hold
        self.garbage_from_others = 0
        self._ports = iter(range(49152 + rng.randrange(8000), 65536))
        self._closed = False
        #: run once after the first successful :meth:`keyed` (a private target: ask for trust, see gate.py)
        self.admission: Callable[[Peer], None] | None = None
        #: set when a private target will not admit this peer: opening a stream or sending a datagram is Unsupported
        self.gate_block: str | None = None

    # -- plumbing --------------------------------------------------------------------------------------

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.sock.close()

    def wait(self, seconds: float) -> float:
        """``seconds`` scaled by ``--timeout-scale``."""
        return seconds * self.target.scale

    def new_port(self) -> int:
        return next(self._ports)

    def send_raw(self, data: bytes, note: str = "") -> None:
        self.log.add("out", self.local, self.target.addr, data, note or _describe(data))
        self.sock.sendto(data, self.target.addr)

    def _recv_raw(self, deadline: float) -> bytes | None:
        """Next datagram from the target before ``deadline`` (monotonic), else None.  Datagrams from
        any other address are counted and ignored."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                return None
            except OSError:  # ICMP port unreachable surfaces as ECONNREFUSED on Linux
                continue
            if (str(addr[0]), int(addr[1])) != self.target.addr:
                self.garbage_from_others += 1
                continue
            return data

    def _deliver(self, data: bytes) -> Inbound | None:
        """Decode and log one datagram from the target; an authenticated PILS becomes an :class:`Inbound`."""
        item = self._open(data)
        if item is None:
            self.other.append(data)
            self.log.add("in", self.local, self.target.addr, data, _describe(data))
            return None
        self.inbound.append(item)
        pkt = item.packet.describe() if item.packet is not None else f"undecodable inner packet: {item.error}"
        self.log.add("in", self.local, self.target.addr, data, f"PILS ctr={item.counter} {pkt}")
        return item

    def _open(self, data: bytes) -> Inbound | None:
        if len(data) < 36 or data[:4] != b"PILS":
            return None
        sender = int.from_bytes(data[4:8], "big")
        nonce, ct = data[8:20], data[20:]
        for keys in [self.keys, *self.old_keys]:
            if keys is None or sender != keys.target_id:
                continue
            try:
                plain = keys.aead.decrypt(nonce, ct, data[4:8])
            except InvalidTag:
                continue
            counter = int.from_bytes(nonce[4:], "big")
            try:
                pkt = decode_packet(plain, self.target.profile)
            except PilotError as exc:
                return Inbound(time.monotonic(), nonce[:4], counter, None, str(exc), plain, len(data))
            return Inbound(time.monotonic(), nonce[:4], counter, pkt, "", plain, len(data))
        return None

    def receive(self, duration: float, until: Callable[[Inbound | None, bytes], bool] | None = None) -> list[bytes]:
        """Read for up to ``duration`` (scaled) seconds, or until ``until(item, datagram)`` is true.

        Returns the datagrams read (bounded by :data:`MAX_DATAGRAMS_PER_WAIT`)."""
        deadline = time.monotonic() + self.wait(duration)
        got: list[bytes] = []
        while len(got) < MAX_DATAGRAMS_PER_WAIT:
            data = self._recv_raw(deadline)
            if data is None:
                break
            got.append(data)
            item = self._deliver(data)
            if until is not None and until(item, data):
                break
        return got

    def expect_packet(self, match: Callable[[Packet], bool], duration: float = 2.0) -> Packet | None:
        """The first authenticated inner packet satisfying ``match`` within ``duration`` (scaled), else None."""
        found: list[Packet] = []

        def until(item: Inbound | None, _data: bytes) -> bool:
            if item is not None and item.packet is not None and match(item.packet):
                found.append(item.packet)
                return True
            return False

        self.receive(duration, until)
        return found[0] if found else None

    def packets_during(self, duration: float) -> list[Packet]:
        """Every authenticated inner packet that arrives within ``duration`` (scaled) seconds."""
        start = len(self.inbound)
        self.receive(duration)
        return [i.packet for i in self.inbound[start:] if i.packet is not None]

    # -- tunnel ----------------------------------------------------------------------------------------

    def kex_frame(self, private: X25519PrivateKey, *, auth: bool, sender: int | None = None) -> bytes:
        pub = private.public_key().public_bytes_raw()
        sid = self.node_id if sender is None else sender
        if not auth:
            return b"PILK" + sid.to_bytes(4, "big") + pub
        if self.identity is None:
            raise Unsupported("PILA needs an identity the target trusts (give --registry, or use the built-in node)")
        sig = self.identity.sign(auth_kex_signed_message(sid, pub))
        return b"PILA" + sid.to_bytes(4, "big") + pub + self.identity.public_bytes + sig

    def new_private(self) -> X25519PrivateKey:
        return X25519PrivateKey.from_private_bytes(self.rng.randbytes(32))

    def key_exchange(
        self, *, auth: bool = False, private: X25519PrivateKey | None = None, frame: bytes | None = None,
        duration: float = 3.0, retries: int = 2,
    ) -> TunnelKeys | None:  # fmt: skip
        """Offer a key (PILK, or PILA with ``auth``) and wait for the target's answer; None if none came.

        ``frame`` overrides the datagram sent (a broken offer); the answer is still paired with ``private``.
        The offer is repeated ``retries`` times (UDP loss), each wait ``duration / (retries + 1)``."""
        private = private or self.new_private()
        offer = frame if frame is not None else self.kex_frame(private, auth=auth)
        answer: list[bytes] = []

        def until(_item: Inbound | None, data: bytes) -> bool:
            if data[:4] in (b"PILK", b"PILA") and len(data) >= 40:
                answer.append(data)
                return True
            return False

        for _ in range(retries + 1):
            self.send_raw(offer)
            self.receive(duration / (retries + 1), until)
            if answer:
                break
        if not answer:
            return None
        data = answer[0]
        target_id = int.from_bytes(data[4:8], "big")
        target_pub = data[8:40]
        shared = private.exchange(X25519PublicKey.from_public_bytes(target_pub))
        key = derive_tunnel_key(shared)
        keys = TunnelKeys(
            AESGCM(bytes(key)), self.node_id, target_id, private.public_key().public_bytes_raw(), target_pub,
            self.rng.randbytes(4), self.target.counter_start, data[:4] == b"PILA", data,
        )  # fmt: skip
        if self.keys is not None:
            self.old_keys.insert(0, self.keys)
        self.keys = keys
        return keys

    def keyed(self, *, auth: bool = False) -> TunnelKeys:
        """A working tunnel or :class:`Inconclusive` (the sanity check proves the target can key)."""
        keys = self.key_exchange(auth=auth)
        if keys is None:
            raise Inconclusive(f"the target did not answer our {'PILA' if auth else 'PILK'} key exchange")
        if self.target.node_id is not None and keys.target_id != self.target.node_id:
            raise AssertionError(f"the target answered as node {keys.target_id}, expected {self.target.node_id}")
        hook, self.admission = self.admission, None
        if hook is not None:
            hook(self)
        return keys

    def verify_answer_signature(self, keys: TunnelKeys) -> bool | None:
        """For a PILA answer: does its signature verify (under --target-key if given)?  None for PILK."""
        data = keys.answer
        if data[:4] != b"PILA" or len(data) < 136:
            return None
        ed = self.target.ed25519 or data[40:72]
        try:
            Ed25519PublicKey.from_public_bytes(ed).verify(
                data[72:136], auth_kex_signed_message(keys.target_id, data[8:40])
            )
        except (InvalidSignature, ValueError):
            return False
        return data[40:72] == ed

    def seal(
        self,
        inner: bytes,
        *,
        counter: int | None = None,
        sender: int | None = None,
        aad: bytes | None = None,
        prefix: bytes | None = None,
        aead: AESGCM | None = None,
        advance: bool = True,
    ) -> bytes:
        """A PILS frame carrying ``inner``; every field may be overridden (counter, sender, AAD, key)."""
        keys = self._need_keys()
        nonce = keys.nonce(counter, prefix)
        if counter is None and advance:
            keys.counter += 1
        sid = (keys.our_id if sender is None else sender).to_bytes(4, "big")
        ct = (aead or keys.aead).encrypt(nonce, inner, sid if aad is None else aad)
        return b"PILS" + sid + nonce + ct

    def _need_keys(self) -> TunnelKeys:
        if self.keys is None:
            raise RuntimeError("no tunnel key yet: call key_exchange() first")
        return self.keys

    def addr(self) -> Addr:
        return Addr(0, self.node_id)

    def target_addr(self) -> Addr:
        keys = self._need_keys()
        return Addr(0, keys.target_id)

    def send_packet(self, pkt: Packet | bytes, note: str = "", **seal: object) -> bytes:
        """Seal and send one inner packet; returns the frame sent."""
        inner = encode_packet(pkt) if isinstance(pkt, Packet) else pkt
        if (
            self.gate_block is not None
            and len(inner) > 1
            and (inner[1] == DATAGRAM or (inner[1] == STREAM and inner[0] & (SYN | ACK) == SYN))
        ):
            raise Unsupported(self.gate_block)
        frame = self.seal(inner, **seal)  # type: ignore[arg-type]
        self.send_raw(frame, note or f"PILS {_describe_inner(inner)}")
        return frame

    def answer_offer(self, offer: bytes, *, auth: bool = False) -> TunnelKeys:
        """Dialer tests: pair the peer's PILK/PILA ``offer`` with a fresh key of ours and send our answer."""
        private = self.new_private()
        target_id = int.from_bytes(offer[4:8], "big")
        shared = private.exchange(X25519PublicKey.from_public_bytes(offer[8:40]))
        keys = TunnelKeys(
            AESGCM(bytes(derive_tunnel_key(shared))), self.node_id, target_id,
            private.public_key().public_bytes_raw(), offer[8:40], self.rng.randbytes(4), self.target.counter_start,
            offer[:4] == b"PILA", offer,
        )  # fmt: skip
        self.keys = keys
        self.send_raw(self.kex_frame(private, auth=auth))
        return keys

    # -- probes ----------------------------------------------------------------------------------------

    def ping_packet(
        self, seq: int | None = None, payload: bytes = b"conformance", src_port: int | None = None
    ) -> Packet:
        seq = self.rng.getrandbits(31) if seq is None else seq
        return Packet(0, CONTROL, self.addr(), self.target_addr(), src_port or self.new_port(), 0, seq=seq,
                      payload=payload)  # fmt: skip

    @staticmethod
    def is_ping_reply(req: Packet) -> Callable[[Packet], bool]:
        return lambda p: (
            p.protocol == CONTROL and p.src_port == 0 and p.dst_port == req.src_port and p.seq == req.seq
            and p.payload == req.payload
        )  # fmt: skip

    def ping(self, duration: float = 2.0) -> Packet | None:
        """Control ping to port 0 (SVC-041); the reply or None."""
        req = self.ping_packet()
        self.send_packet(req)
        return self.expect_packet(self.is_ping_reply(req), duration)

    def alive(self, duration: float = 2.0) -> None:
        """Assert the tunnel still carries a ping both ways (raises Unsupported if pings never worked)."""
        for _ in range(2):
            if self.ping(duration / 2) is not None:
                return
        raise AssertionError("the target no longer answers pings through the tunnel")

    def require_ping(self) -> None:
        """Unsupported unless the target answers a Control ping (tests that observe drops need it)."""
        if self.ping() is None and self.ping() is None:
            raise Unsupported(
                "the target does not answer Control pings on port 0 (SVC-041), so drops cannot be told apart"
            )

    def stream(self, dst_port: int, **kw: object) -> Stream:
        if self.gate_block is not None:
            raise Unsupported(self.gate_block)
        return Stream(self, dst_port, **kw)  # type: ignore[arg-type]


class Stream:
    """A hand-driven stream connection (draft 8): the test decides every segment; nothing is automatic."""

    def __init__(self, peer: Peer, dst_port: int, *, src_port: int | None = None, isn: int | None = None,
                 window: int = 64) -> None:  # fmt: skip
        self.peer = peer
        self.dst_port = dst_port
        self.src_port = src_port or peer.new_port()
        self.isn = peer.rng.getrandbits(32) if isn is None else isn
        self.snd_nxt = self.isn
        self.rcv_nxt = 0
        self.irs: int | None = None
        self.window = window
        self.received = bytearray()
        self.synack: Packet | None = None
        self.fin_seen = False
        self.max_sent = self.isn  # highest sequence end we have sent (SACK blocks must lie below it)

    def sack_blocks(self, p: Packet) -> list[tuple[int, int]] | None:
        """The SACK blocks of a pure-ACK payload (draft 8.6 wire: 'SACK', count, left/right pairs), or None
        when the payload is data: wrong length, an empty block, or a block outside what we have sent."""
        pay = p.payload
        if pay[:4] != b"SACK" or len(pay) < 5 or len(pay) != 5 + 8 * pay[4] or pay[4] == 0:
            return None
        u32 = [int.from_bytes(pay[i : i + 4], "big") for i in range(5, len(pay), 4)]
        blocks = list(zip(u32[0::2], u32[1::2], strict=True))
        span = (self.max_sent - self.isn) & MASK32
        for left, right in blocks:
            if not 0 < (right - left) & MASK32 <= span or (right - self.isn) & MASK32 > span:
                return None
        return blocks

    def is_data(self, p: Packet) -> bool:
        return bool(p.payload) and self.sack_blocks(p) is None

    def mine(self, p: Packet) -> bool:
        return p.protocol == STREAM and p.src_port == self.dst_port and p.dst_port == self.src_port

    def packet(self, flags: int, payload: bytes = b"", *, seq: int | None = None, ack: int | None = None,
               window: int | None = None, version: int = 1) -> Packet:  # fmt: skip
        return Packet(flags, STREAM, self.peer.addr(), self.peer.target_addr(), self.src_port, self.dst_port,
                      seq=self.snd_nxt if seq is None else seq & MASK32,
                      ack=self.rcv_nxt if ack is None else ack & MASK32,
                      window=self.window if window is None else window, payload=payload, version=version)  # fmt: skip

    def syn(self, version: int = 1) -> Packet:
        pkt = self.packet(SYN, seq=self.isn, ack=0, version=version)
        if version == 1:
            self.peer.send_packet(pkt)
        else:  # encode_packet refuses nothing in range, but keep the raw path explicit
            self.peer.send_packet(raw_header(flags=SYN, src=pkt.src, dst=pkt.dst, src_port=self.src_port,
                                             dst_port=self.dst_port, seq=self.isn, window=self.window,
                                             version=version))  # fmt: skip
        self.snd_nxt = self.max_sent = (self.isn + 1) & MASK32
        return pkt

    def reply(self, duration: float = 3.0, match: Callable[[Packet], bool] | None = None) -> Packet | None:
        return self.peer.expect_packet(lambda p: self.mine(p) and (match is None or match(p)), duration)

    def connect(self, duration: float = 4.0) -> Packet:
        """SYN, SYN-ACK, ACK (draft 8.2).  Unsupported when the port answers RST (nothing listens)."""
        self.syn()
        ans = self.reply(duration, lambda p: bool(p.flags & (SYN | RST)))
        if ans is None:
            self.syn()  # one retransmission of our own, in case the first was lost
            ans = self.reply(duration, lambda p: bool(p.flags & (SYN | RST)))
        if ans is None:
            raise Inconclusive(f"no SYN-ACK or RST from port {self.dst_port} within {duration} s (x scale)")
        if ans.flags & RST:
            raise Unsupported(f"nothing listens on port {self.dst_port} (the target answered RST)")
        assert ans.flags & (SYN | ACK) == SYN | ACK, f"expected SYN-ACK, got {ans.describe()}"
        assert ans.ack == self.snd_nxt, f"SYN-ACK acknowledges {ans.ack}, expected ISN+1 = {self.snd_nxt}"
        self.synack = ans
        self.irs = ans.seq
        self.rcv_nxt = (ans.seq + 1) & MASK32
        self.peer.send_packet(self.packet(ACK))
        return ans

    def send(self, data: bytes, flags: int = ACK, **kw: object) -> Packet:
        pkt = self.packet(flags, data, **kw)  # type: ignore[arg-type]
        self.peer.send_packet(pkt)
        end = (pkt.seq + len(data) + (1 if flags & FIN else 0)) & MASK32
        if 0 < (end - self.max_sent) & MASK32 < 1 << 31:
            self.max_sent = end
        if "seq" not in kw:
            self.snd_nxt = (self.snd_nxt + len(data) + (1 if flags & FIN else 0)) & MASK32
        return pkt

    def ack(self, **kw: object) -> Packet:
        pkt = self.packet(ACK, **kw)  # type: ignore[arg-type]
        self.peer.send_packet(pkt)
        return pkt

    def absorb(self, p: Packet) -> bool:
        """Take an in-order segment into ``received`` (True if it advanced rcv_nxt)."""
        if p.seq != self.rcv_nxt or self.sack_blocks(p) is not None:
            return False
        moved = False
        if p.payload:
            self.received += p.payload
            self.rcv_nxt = (self.rcv_nxt + len(p.payload)) & MASK32
            moved = True
        if p.flags & FIN:
            self.rcv_nxt = (self.rcv_nxt + 1) & MASK32
            self.fin_seen = True
            moved = True
        return moved

    def read(self, n: int, duration: float = 4.0, ack: bool = True) -> bytes:
        """Collect ``n`` bytes in order (acknowledging each advance unless ``ack`` is False)."""
        deadline = time.monotonic() + self.peer.wait(duration)
        start = len(self.received)
        while len(self.received) - start < n and not self.fin_seen:
            left = (deadline - time.monotonic()) / self.peer.target.scale
            if left <= 0:
                break
            p = self.reply(left, lambda p: self.is_data(p) or bool(p.flags & (FIN | RST)))
            if p is None:
                break
            if p.flags & RST:
                raise AssertionError(f"the target reset the connection: {p.describe()}")
            if self.absorb(p) and ack:
                self.ack()
            elif ack:
                self.ack()  # duplicate or out of order: re-acknowledge what we have
        return bytes(self.received[start:])


def segments(items: Iterator[Inbound]) -> list[Packet]:
    return [i.packet for i in items if i.packet is not None]


def _describe(data: bytes) -> str:
    magic = data[:4]
    if magic == b"PILS" and len(data) >= 20:
        return (
            f"PILS sender={int.from_bytes(data[4:8], 'big')} ctr={int.from_bytes(data[12:20], 'big')} len={len(data)}"
        )
    if magic in (b"PILK", b"PILA") and len(data) >= 8:
        return f"{magic.decode()} sender={int.from_bytes(data[4:8], 'big')} len={len(data)}"
    if magic == b"PILT":
        return f"PILT {_describe_inner(data[4:])}"
    if magic == b"PILP":
        return f"PILP len={len(data)}"
    return f"unknown ({data[:8].hex()}...) len={len(data)}"


def _describe_inner(inner: bytes) -> str:
    try:
        return decode_packet(inner, Profile.GO_INTEROP, verify_checksum=False, check_version=False).describe()
    except PilotError as exc:
        return f"raw packet ({exc.code.name}) len={len(inner)}"

"""An independent raw-frame Pilot peer for adversarial tests (issue 9).

Written from the draft alone with plain ``cryptography``, ``struct`` and ``zlib``; it imports nothing from
``pilot_proto``, so a bug shared with our own codecs cannot hide.  Layouts (draft sections):

* packet header (6.1): 34 bytes, ``ver<<4 | flags``, protocol, payload length, source network/node,
  destination network/node, ports, seq, ack, window, CRC-32 over header (checksum zeroed) + payload (6.5);
* PILS (7.2): ``"PILS" || sender u32 || nonce(prefix 4 || counter u64) || AES-256-GCM(packet)``,
  AAD = the 4-byte sender ID (the reading both implementations share);
* PILK (7.3): ``"PILK" || sender u32 || X25519 public``;
* PILA (7.4): PILK's fields then the Ed25519 public key and a signature over ``"auth" || sender || X25519``;
* key (10.3): HKDF-SHA256, empty salt, info ``"pilot-tunnel-v1"``, 32 bytes.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HEADER = struct.Struct(">BBHHIHIHHIIHI")
assert HEADER.size == 34
SYN, ACK, FIN, RST = 0x1, 0x2, 0x4, 0x8
STREAM, DATAGRAM, CONTROL = 0x01, 0x02, 0x03


@dataclass(frozen=True)
class Hdr:
    version: int
    flags: int
    protocol: int
    src_net: int
    src_node: int
    dst_net: int
    dst_node: int
    src_port: int
    dst_port: int
    seq: int
    ack: int
    window: int
    payload: bytes


def packet(
    *,
    src: tuple[int, int],
    dst: tuple[int, int],
    sport: int,
    dport: int,
    flags: int = 0,
    protocol: int = STREAM,
    seq: int = 0,
    ack: int = 0,
    window: int = 64,
    payload: bytes = b"",
    version: int = 1,
) -> bytes:
    """An inner packet with a correct CRC-32 (draft 6.5); any version/flag nibble may be given."""
    fields = [
        (version & 0xF) << 4 | (flags & 0xF),
        protocol,
        len(payload),
        src[0],
        src[1],
        dst[0],
        dst[1],
        sport,
        dport,
        seq,
        ack,
        window,
    ]
    unsigned = HEADER.pack(*fields, 0) + payload
    return HEADER.pack(*fields, zlib.crc32(unsigned)) + payload


def parse(data: bytes) -> Hdr:
    f = HEADER.unpack_from(data)
    unsigned = HEADER.pack(*f[:-1], 0) + data[34:]
    if zlib.crc32(unsigned) != f[-1]:
        raise ValueError("bad CRC")
    return Hdr(f[0] >> 4, f[0] & 0xF, f[1], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], data[34:])


def hkdf_tunnel_key(shared: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"pilot-tunnel-v1").derive(shared)


@dataclass
class Session:
    key: bytes
    our_x: bytes
    peer_x: bytes
    prefix: bytes = field(default_factory=lambda: os.urandom(4))
    counter: int = 0


class RawPeer:
    """One node's tunnel end, frame by frame.  Nothing is sent unless a test calls a method."""

    def __init__(self, node: int, *, identity: Ed25519PrivateKey | None = None, counter_start: int = 0) -> None:
        self.node = node
        self.identity = identity
        self.counter_start = counter_start
        self._x = X25519PrivateKey.generate()
        self.sessions: list[Session] = []  # newest first
        self.sent_kex: list[bytes] = []

    @property
    def x_public(self) -> bytes:
        return self._x.public_key().public_bytes_raw()

    @property
    def ed_public(self) -> bytes:
        assert self.identity is not None
        return self.identity.public_key().public_bytes_raw()

    def new_key(self) -> None:
        """Forget our X25519 key (a restart or re-key): the next key exchange carries a fresh one."""
        self._x = X25519PrivateKey.generate()

    def kex(self, trailer: bytes = b"") -> bytes:
        """PILA if we have an Ed25519 identity, else PILK, carrying our current X25519 key."""
        me = struct.pack(">I", self.node)
        if self.identity is None:
            frame = b"PILK" + me + self.x_public
        else:
            sig = self.identity.sign(b"auth" + me + self.x_public)
            frame = b"PILA" + me + self.x_public + self.ed_public + sig + trailer
        self.sent_kex.append(frame)
        return frame

    def take_answer(self, frame: bytes) -> int:
        """Derive the session a PILK/PILA answer implies with our current key; returns the answerer's node ID."""
        magic, sender = frame[:4], struct.unpack_from(">I", frame, 4)[0]
        if magic not in (b"PILA", b"PILK"):
            raise ValueError(f"not a key exchange: {magic!r}")
        peer_x = frame[8:40]
        shared = self._x.exchange(X25519PublicKey.from_public_bytes(peer_x))
        self.sessions.insert(0, Session(hkdf_tunnel_key(shared), self.x_public, peer_x, counter=self.counter_start))
        return int(sender)

    def seal(self, inner: bytes, session: Session | None = None) -> bytes:
        s = session or self.sessions[0]
        nonce = s.prefix + struct.pack(">Q", s.counter)
        s.counter += 1
        me = struct.pack(">I", self.node)
        return b"PILS" + me + nonce + AESGCM(s.key).encrypt(nonce, inner, me)

    def open(self, frame: bytes) -> Hdr:
        """Decrypt a PILS frame from the target under any of our sessions and parse the inner packet."""
        if frame[:4] != b"PILS":
            raise ValueError(f"not PILS: {frame[:4]!r}")
        sender, nonce = frame[4:8], frame[8:20]
        for s in self.sessions:
            try:
                return parse(AESGCM(s.key).decrypt(nonce, frame[20:], sender))
            except InvalidTag:
                continue
        raise ValueError("no session opens this frame")

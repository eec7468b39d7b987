"""DANGEROUS, TEST-ONLY tunnel crafting: seal and build frames with explicit, possibly wrong, material.

Nothing in a Pilot stack should import this module.  It exists so a test harness (the conformance
suite, the scripted peer, adversarial tests) can produce exactly the frame it wants, including
frames a correct endpoint never produces -- the way dissononce keeps its ``dangerous`` helpers
apart from the safe API.  Using it outside tests CAN BREAK SECURITY:

* :func:`seal_pils` takes the key, nonce prefix, counter (or a whole nonce), cleartext sender and
  AAD from the caller, so it will happily reuse a (key, nonce) pair -- which destroys AES-GCM's
  confidentiality and integrity (draft 11, NONCE-004).  Nothing here remembers used nonces.
* :func:`derive_session_key` returns the session key as immutable ``bytes`` that cannot be wiped
  (the safe path keeps keys in wipeable buffers and inside the AEAD only, SEC-010).
* :func:`pila_frame` signs whatever it is asked to sign, or writes a signature it is given.
* :class:`KeyLog` writes session keys to a file (like TLS's SSLKEYLOGFILE) so captures can be
  decrypted later; anyone who reads that file can read those sessions.

The derivations are the tunnel's own (:mod:`pilot_proto.tunnel.kdf`): X25519 (RFC 7748), then
HKDF-SHA256 with an empty salt and info ``pilot-tunnel-v1`` (draft 10.3, SEC-008); the PILS nonce
is prefix (4) || counter (u64 big-endian, erratum E-NONCE-2) and the AAD is the sender's node ID as
u32 big-endian (draft 10.2, SEC-006).

Key-log file format (v1; this is the one place it is defined)::

    # pilot-proto key log v1: PILS <node> <node> <AES-256-GCM key, hex>
    PILS 3735928559 12648430 5f0c...(64 hex digits)

UTF-8/ASCII text, one session per line; blank lines and lines starting with ``#`` are ignored.  The
first word is the label (``PILS``: a tunnel session key, the only kind so far; later kinds get their
own label, as SSLKEYLOGFILE's ``CLIENT_RANDOM`` does).  Then the two node IDs of the session in
decimal, in either order, and the 32-byte key in hex.  One key serves BOTH directions of a session
(both sides derive the same HKDF output); the directions differ only by nonce prefix (E-NONCE-3),
so one line decrypts every PILS frame either node sealed under it.  A re-key adds a line; the same
pair may have several.  Writers: :class:`KeyLog` (``KeyLog(path).write`` is also the signature of
``TunnelEndpoint(key_log=...)``), ``pilot-proto node --keylog FILE`` and the scripted peer; readers:
:meth:`KeyLog.load`, the tap and the conformance suite's ``--keylog``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pilot_proto.tunnel.identity import Identity
from pilot_proto.tunnel.kdf import derive_tunnel_key, wipe, x25519_shared_secret
from pilot_proto.wire.frames import NONCE_SIZE, auth_kex_signed_message

__all__ = [
    "KEYLOG_HEADER",
    "CraftedSession",
    "KeyLog",
    "X25519Keypair",
    "derive_session_key",
    "keylog_line",
    "open_pils",
    "pila_frame",
    "pilk_frame",
    "pils_nonce",
    "seal_pils",
    "sender_aad",
]

_U32 = struct.Struct(">I")


def sender_aad(sender: int) -> bytes:
    """The AAD the tunnel binds to every PILS frame: the sender node ID, u32 big-endian (SEC-006)."""
    return _U32.pack(sender)


def pils_nonce(prefix: bytes, counter: int) -> bytes:
    """Nonce = 4-byte prefix || 8-byte big-endian counter (draft 11.1, erratum E-NONCE-2)."""
    if len(prefix) != 4:
        raise ValueError("a nonce prefix is 4 bytes")
    return bytes(prefix) + counter.to_bytes(8, "big")


def seal_pils(
    key: bytes,
    inner: bytes,
    *,
    sender: int,
    counter: int = 0,
    prefix: bytes = b"\x00\x00\x00\x00",
    nonce: bytes | None = None,
    aad: bytes | None = None,
    magic: bytes = b"PILS",
) -> bytes:
    """A complete PILS datagram: ``magic || sender u32 || nonce 12 || AES-256-GCM(key, nonce, inner, aad)``.

    ``nonce`` (12 bytes) overrides ``prefix``/``counter``; ``aad`` defaults to ``sender``'s 4 bytes
    (pass another value to forge a sender/AAD mismatch); ``key`` may be any 32 bytes.
    """
    n = pils_nonce(prefix, counter) if nonce is None else bytes(nonce)
    if len(n) != NONCE_SIZE:
        raise ValueError("a PILS nonce is 12 bytes")
    tag_aad = sender_aad(sender) if aad is None else bytes(aad)
    return bytes(magic) + _U32.pack(sender) + n + AESGCM(bytes(key)).encrypt(n, bytes(inner), tag_aad)


def open_pils(key: bytes, datagram: bytes, *, aad: bytes | None = None) -> bytes:
    """Decrypt a PILS datagram under ``key`` (AAD defaults to its cleartext sender).  Raises ``InvalidTag``.

    No replay state is kept: this is for reading what a target sent, not for accepting it.
    """
    if len(datagram) < 4 + 4 + NONCE_SIZE + 16 or datagram[:4] != b"PILS":
        raise ValueError("not a PILS datagram")
    nonce = bytes(datagram[8:20])
    return AESGCM(bytes(key)).decrypt(nonce, bytes(datagram[20:]), bytes(datagram[4:8]) if aad is None else aad)


@dataclass(frozen=True)
class X25519Keypair:
    """An X25519 private key and its public bytes, kept as plain bytes (unwipeable; tests only)."""

    private: bytes
    public: bytes

    @classmethod
    def generate(cls, rng: Callable[[int], bytes]) -> X25519Keypair:
        """From ``rng(32)``: the caller injects the randomness (the core never draws any itself)."""
        if not callable(rng):
            raise TypeError("rng must be a callable returning n bytes, e.g. os.urandom")
        private = bytes(rng(32))
        if len(private) != 32:
            raise ValueError(f"rng(32) returned {len(private)} bytes")
        return cls.from_private(private)

    @classmethod
    def from_private(cls, private: bytes) -> X25519Keypair:
        key = X25519PrivateKey.from_private_bytes(bytes(private))
        return cls(bytes(private), key.public_key().public_bytes_raw())


def derive_session_key(our_private: bytes, peer_public: bytes) -> bytes:
    """The PILS key both sides derive: HKDF-SHA256(salt="", X25519(our, peer), "pilot-tunnel-v1") (draft 10.3).

    Raises :class:`~pilot_proto.errors.RemoteProtocolError` ``BAD_PUBLIC_KEY`` for a low-order peer key,
    exactly as the tunnel does.  The result is plain ``bytes`` (see the module warning).
    """
    secret = x25519_shared_secret(X25519PrivateKey.from_private_bytes(bytes(our_private)), peer_public)
    key = derive_tunnel_key(secret)
    wipe(secret)
    out = bytes(key)
    wipe(key)
    return out


def pilk_frame(sender: int, x25519_public: bytes, *, trailer: bytes = b"", magic: bytes = b"PILK") -> bytes:
    """``PILK || sender u32 || X25519 public`` (draft 7.3); the key is written as given, any length."""
    return bytes(magic) + _U32.pack(sender) + bytes(x25519_public) + bytes(trailer)


def pila_frame(
    sender: int,
    x25519_public: bytes,
    signer: Identity | Ed25519PrivateKey | None = None,
    *,
    ed25519_public: bytes | None = None,
    signature: bytes | None = None,
    signed_sender: int | None = None,
    signed_x25519: bytes | None = None,
    bad_signature: bool = False,
    trailer: bytes = b"",
    magic: bytes = b"PILA",
) -> bytes:
    """``PILA || sender || X25519 32 || Ed25519 32 || signature 64 [|| trailer]`` (draft 7.4).

    By default ``signer`` signs ``"auth" || sender || x25519_public`` (TUN-018) and its public key is
    written.  Overrides: ``ed25519_public`` (write another identity's key), ``signature`` (write
    these 64 bytes), ``signed_sender``/``signed_x25519`` (sign other values than the frame carries),
    ``bad_signature`` (flip one bit of the signature).
    """
    if signature is None:
        if signer is None:
            raise ValueError("give a signer or an explicit signature")
        message = auth_kex_signed_message(
            sender if signed_sender is None else signed_sender,
            bytes(x25519_public if signed_x25519 is None else signed_x25519),
        )
        signature = signer.sign(message)
    if ed25519_public is None:
        if isinstance(signer, Identity):
            ed25519_public = signer.public_bytes
        elif isinstance(signer, Ed25519PrivateKey):
            ed25519_public = signer.public_key().public_bytes_raw()
        else:
            raise ValueError("give ed25519_public when there is no signer")
    sig = bytearray(signature)
    if bad_signature:
        sig[len(sig) // 2] ^= 0x01
    return bytes(magic) + _U32.pack(sender) + bytes(x25519_public) + bytes(ed25519_public) + bytes(sig) + bytes(trailer)


@dataclass
class CraftedSession:
    """One direction of a PILS session with every knob exposed: ``seal()`` steps the counter, nothing else.

    ``counter`` is the next counter :meth:`seal` uses; set it (backwards too) to replay or skip.
    """

    key: bytes
    sender: int
    prefix: bytes = b"\x00\x00\x00\x00"
    counter: int = 0
    sealed: list[int] = field(default_factory=list)

    def seal(self, inner: bytes, **overrides: object) -> bytes:
        """Seal ``inner`` at the current counter (then advance it); ``overrides`` go to :func:`seal_pils`."""
        args: dict[str, object] = {"sender": self.sender, "counter": self.counter, "prefix": self.prefix}
        args.update(overrides)
        datagram = seal_pils(self.key, inner, **args)  # type: ignore[arg-type]
        self.sealed.append(int.from_bytes(datagram[12:20], "big"))
        self.counter += 1
        return datagram

    def open(self, datagram: bytes) -> bytes:
        """Decrypt a frame the other side sealed under the same key (no replay state)."""
        return open_pils(self.key, datagram)


# -- key log (the SSLKEYLOGFILE of Pilot) ------------------------------------------------------------------

KEYLOG_HEADER = "# pilot-proto key log v1: PILS <node> <node> <AES-256-GCM key, hex>"


def keylog_line(node_a: int, node_b: int, key: bytes) -> str:
    """One key-log line: ``PILS <node_a> <node_b> <key hex>`` (node IDs in decimal, either order).

    Whoever holds a key log can decrypt every PILS frame of those sessions: treat it like the keys.
    """
    if len(key) != 32:
        raise ValueError("a PILS key is 32 bytes")
    return f"PILS {node_a} {node_b} {bytes(key).hex()}"


@dataclass
class KeyLog:
    """Session keys by node pair, read from or written to a key-log file (one :func:`keylog_line` per line).

    ``write`` appends to ``path`` (if given) as keys are learned, so a run that dies still leaves its
    keys behind; :meth:`open_pils` finds the key that opens a captured frame (the GCM tag tells).
    """

    path: str | None = None
    keys: dict[frozenset[int], list[bytes]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> KeyLog:
        log = cls()
        with open(path, encoding="ascii") as fh:
            log.parse(fh.read())
        return log

    def parse(self, text: str) -> None:
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 4 or parts[0] != "PILS" or len(parts[3]) != 64:
                raise ValueError(f"key log line {n}: expected 'PILS <node> <node> <64 hex digits>'")
            self._add(int(parts[1]), int(parts[2]), bytes.fromhex(parts[3]))

    def _add(self, a: int, b: int, key: bytes) -> bool:
        known = self.keys.setdefault(frozenset((a, b)), [])
        if key in known:
            return False
        known.append(key)
        return True

    def write(self, node_a: int, node_b: int, key: bytes) -> None:
        """Remember a key; append it to the file when one is set (the header goes in first)."""
        if not self._add(node_a, node_b, bytes(key)) or self.path is None:
            return
        new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        with open(self.path, "a", encoding="ascii") as fh:
            if new:
                fh.write(KEYLOG_HEADER + "\n")
            fh.write(keylog_line(node_a, node_b, key) + "\n")

    def candidates(self, sender: int) -> list[bytes]:
        return [k for pair, keys in self.keys.items() if sender in pair for k in keys]

    def open_pils(self, datagram: bytes) -> bytes | None:
        """The inner packet of a captured PILS datagram, or None if no logged key opens it."""
        opened = self.open_pils_keyed(datagram)
        return None if opened is None else opened[1]

    def open_pils_keyed(self, datagram: bytes) -> tuple[bytes, bytes] | None:
        """``(key, inner packet)`` for a captured PILS datagram, or None if no logged key opens it."""
        if len(datagram) < 36 or datagram[:4] != b"PILS":
            return None
        for key in self.candidates(int.from_bytes(datagram[4:8], "big")):
            try:
                return key, open_pils(key, datagram)
            except InvalidTag:
                continue
        return None

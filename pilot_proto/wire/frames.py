"""Tunnel frames carried in UDP datagrams (draft section 7) -- fast codec.

Every datagram on a daemon's socket is either a beacon message (first byte
below 0x10, see :mod:`pilot_proto.wire.beacon`) or a tunnel frame starting
with a 4-byte magic:

========  ==========  =====================================================
magic     class       layout after the magic
========  ==========  =====================================================
``PILT``  Plaintext   packet (34-byte header + payload)
``PILS``  Encrypted   sender u32, nonce 12 (prefix 4 + counter u64 BE), AEAD
``PILK``  KeyEx       sender u32, X25519 public key 32
``PILA``  AuthKeyEx   sender u32, X25519 32, Ed25519 32, signature 64 [trailer]
``PILP``  Punch       sender u32 (draft) / nothing (Go, erratum E-PILP-1)
========  ==========  =====================================================

The declarative schemas live in :mod:`pilot_proto.wire.schemas`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import NamedTuple

from pilot_proto.errors import DecodeError, ErrorCode
from pilot_proto.profile import DEFAULT_PROFILE, Profile

__all__ = [
    "AUTH_KEX_SIZE",
    "BEACON_TYPE_LIMIT",
    "DECODERS",
    "GCM_TAG_SIZE",
    "KEX_SIZE",
    "NONCE_SIZE",
    "PILS_HEADER_SIZE",
    "AuthKeyExchangeFrame",
    "EncryptedFrame",
    "Frame",
    "KeyExchangeFrame",
    "Magic",
    "PlaintextFrame",
    "PunchFrame",
    "auth_kex_signed_message",
    "decode_frame",
    "encode_frame",
    "is_beacon_message",
]


class Magic(bytes, enum.Enum):
    """The IANA "Tunnel Magic Values" of draft section 20.1."""

    PILT = b"PILT"
    PILS = b"PILS"
    PILK = b"PILK"
    PILA = b"PILA"
    PILP = b"PILP"


#: Datagrams whose first byte is below this are beacon messages, not frames.
BEACON_TYPE_LIMIT = 0x10
NONCE_SIZE = 12
GCM_TAG_SIZE = 16
PILS_HEADER_SIZE = 4 + 4 + NONCE_SIZE  # magic, sender, nonce
KEX_SIZE = 4 + 4 + 32
AUTH_KEX_SIZE = 4 + 4 + 32 + 32 + 64
_U32 = struct.Struct(">I")
_PILS_HEAD = struct.Struct(">4sI12s")


class PlaintextFrame(NamedTuple):
    """PILT: an unencrypted packet (draft 7.1).  ``packet`` is the raw packet bytes."""

    packet: bytes


class EncryptedFrame(NamedTuple):
    """PILS: AES-256-GCM sealed packet (draft 7.2).  ``ciphertext`` includes the 16-byte tag."""

    sender: int
    nonce: bytes
    ciphertext: bytes

    @property
    def nonce_prefix(self) -> bytes:
        return self.nonce[:4]

    @property
    def counter(self) -> int:
        """The 8-byte nonce counter, read big-endian (erratum E-NONCE-2)."""
        return int.from_bytes(self.nonce[4:], "big")


class KeyExchangeFrame(NamedTuple):
    """PILK: anonymous X25519 key exchange (draft 7.3)."""

    sender: int
    x25519_public: bytes


class AuthKeyExchangeFrame(NamedTuple):
    """PILA: X25519 key bound to an Ed25519 identity (draft 7.4).

    ``trailer`` holds bytes after the 136-byte frame (the GoC capability
    trailer); empty under the draft.
    """

    sender: int
    x25519_public: bytes
    ed25519_public: bytes
    signature: bytes
    trailer: bytes = b""


class PunchFrame(NamedTuple):
    """PILP: NAT punch (draft 7.5).  ``sender`` is ``None`` for Go's 4-byte form."""

    sender: int | None = None


Frame = PlaintextFrame | EncryptedFrame | KeyExchangeFrame | AuthKeyExchangeFrame | PunchFrame


def auth_kex_signed_message(sender: int, x25519_public: bytes) -> bytes:
    """The 40 bytes a PILA signature covers: ``"auth" || sender u32 BE || X25519 key`` (draft 7.4)."""
    return b"auth" + _U32.pack(sender) + x25519_public


def is_beacon_message(datagram: bytes | bytearray | memoryview) -> bool:
    """True when the datagram is a beacon message rather than a tunnel frame."""
    return len(datagram) > 0 and datagram[0] < BEACON_TYPE_LIMIT


def _truncated(kind: str, need: int, got: int, section: str, req: str) -> DecodeError:
    return DecodeError(
        ErrorCode.TRUNCATED,
        kind,
        f"{got} bytes, a {kind} frame needs at least {need}",
        section=section,
        requirement=req,
    )


def _trailing(kind: str, size: int, got: int, section: str, req: str) -> DecodeError:
    return DecodeError(
        ErrorCode.TRAILING_DATA,
        kind,
        f"{got} bytes, a {kind} frame is exactly {size}",
        section=section,
        requirement=req,
    )


def decode_frame(datagram: bytes | bytearray | memoryview, profile: Profile = DEFAULT_PROFILE) -> Frame:
    """Classify and parse one tunnel frame.

    Under ``draft`` the fixed-size frames (PILK, PILA, PILP) must have exactly
    their size; ``go-interop`` accepts extra bytes the way the Go daemon does
    (and keeps a PILA trailer in :attr:`AuthKeyExchangeFrame.trailer`), and also
    accepts the 4-byte PILP.
    """
    data = bytes(datagram)
    n = len(data)
    if n < 4:
        raise DecodeError(
            ErrorCode.TRUNCATED,
            "magic",
            f"{n} bytes, a tunnel frame starts with a 4-byte magic",
            section="7",
            requirement="TUN-001",
        )
    magic = data[:4]
    if magic == b"PILS":
        if n < PILS_HEADER_SIZE + GCM_TAG_SIZE:
            raise _truncated("PILS", PILS_HEADER_SIZE + GCM_TAG_SIZE, n, "7.2", "TUN-003")
        _, sender, nonce = _PILS_HEAD.unpack_from(data)
        return EncryptedFrame(sender, nonce, data[PILS_HEADER_SIZE:])
    if magic == b"PILT":
        if n < 4 + 34:
            raise _truncated("PILT", 38, n, "7.1", "TUN-002")
        return PlaintextFrame(data[4:])
    lenient = profile is Profile.GO_INTEROP
    if magic == b"PILK":
        if n < KEX_SIZE:
            raise _truncated("PILK", KEX_SIZE, n, "7.3", "TUN-004")
        if n > KEX_SIZE and not lenient:
            raise _trailing("PILK", KEX_SIZE, n, "7.3", "TUN-004")
        return KeyExchangeFrame(_U32.unpack_from(data, 4)[0], data[8:40])
    if magic == b"PILA":
        if n < AUTH_KEX_SIZE:
            raise _truncated("PILA", AUTH_KEX_SIZE, n, "7.4", "TUN-005")
        if n > AUTH_KEX_SIZE and not lenient:
            raise _trailing("PILA", AUTH_KEX_SIZE, n, "7.4", "TUN-005")
        return AuthKeyExchangeFrame(_U32.unpack_from(data, 4)[0], data[8:40], data[40:72], data[72:136], data[136:])
    if magic == b"PILP":
        if n == 8:
            return PunchFrame(_U32.unpack_from(data, 4)[0])
        if lenient and n == 4:
            return PunchFrame(None)
        if lenient and n > 8:
            return PunchFrame(_U32.unpack_from(data, 4)[0])
        if n < 8:
            raise _truncated("PILP", 8, n, "7.5", "TUN-006")
        raise _trailing("PILP", 8, n, "7.5", "TUN-006")
    raise DecodeError(
        ErrorCode.BAD_MAGIC, "magic", f"unknown tunnel magic {magic.hex()}", section="7", requirement="TUN-001"
    )


def encode_frame(frame: Frame) -> bytes:
    """Serialise any frame.  Fixed-size fields are checked for length."""
    if isinstance(frame, EncryptedFrame):
        if len(frame.nonce) != NONCE_SIZE or len(frame.ciphertext) < GCM_TAG_SIZE:
            raise ValueError("PILS needs a 12-byte nonce and at least a 16-byte tag")
        return _PILS_HEAD.pack(b"PILS", frame.sender, frame.nonce) + frame.ciphertext
    if isinstance(frame, PlaintextFrame):
        return b"PILT" + frame.packet
    if isinstance(frame, KeyExchangeFrame):
        _check_len("x25519_public", frame.x25519_public, 32)
        return b"PILK" + _U32.pack(frame.sender) + frame.x25519_public
    if isinstance(frame, AuthKeyExchangeFrame):
        _check_len("x25519_public", frame.x25519_public, 32)
        _check_len("ed25519_public", frame.ed25519_public, 32)
        _check_len("signature", frame.signature, 64)
        return (
            b"PILA"
            + _U32.pack(frame.sender)
            + frame.x25519_public
            + frame.ed25519_public
            + frame.signature
            + frame.trailer
        )
    if isinstance(frame, PunchFrame):
        return b"PILP" if frame.sender is None else b"PILP" + _U32.pack(frame.sender)
    raise TypeError(f"not a tunnel frame: {frame!r}")


def _check_len(name: str, value: bytes, size: int) -> None:
    if len(value) != size:
        raise ValueError(f"{name} must be {size} bytes, got {len(value)}")


def _decode_draft(data: bytes) -> Frame:
    return decode_frame(data, Profile.DRAFT)


def _decode_go(data: bytes) -> Frame:
    return decode_frame(data, Profile.GO_INTEROP)


#: Byte decoders of this module, for the suite-wide "arbitrary bytes only raise PilotError" test.
DECODERS: dict[str, Callable[[bytes], object]] = {
    "tunnel_frame@draft": _decode_draft,
    "tunnel_frame@go-interop": _decode_go,
}

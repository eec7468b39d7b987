"""Ping on port 0: Control packets (draft 5.2, 6.3; wire-notes 1.13, Go ``handleControlPacket``).

The draft names port 0 "Ping" and protocol 0x03 "Control" but defines no
message.  Go's rule, which we follow in both profiles (SVC-041..043):

* a ping is a Control packet to port 0; its payload is opaque and echoed;
* the reply swaps the addresses, has flags ACK, source port 0, destination port
  = the request's source port, seq = request seq, ack = request seq + 1 (mod 2^32);
* Control packets to any other port are ignored.

The packet itself uses the header codec (:mod:`pilot_proto.wire.header`);
this module adds the ping rules on top.
"""

from __future__ import annotations

from collections.abc import Callable

from pilot_proto.errors import DecodeError, ErrorCode
from pilot_proto.profile import DEFAULT_PROFILE, Profile
from pilot_proto.wire.address import Addr
from pilot_proto.wire.header import Flags, Packet, PacketProtocol, decode_packet

__all__ = ["PING_PORT", "build_ping", "build_reply", "decode_ping", "decode_pong", "is_ping", "is_reply_to"]

PING_PORT = 0
_SEQ_MOD = 1 << 32


def build_ping(src: Addr, dst: Addr, src_port: int, seq: int = 0, payload: bytes = b"") -> Packet:
    """A ping request from ``src:src_port`` to ``dst:0``."""
    return Packet(Flags.NONE, PacketProtocol.CONTROL, src, dst, src_port, PING_PORT, seq=seq, payload=payload)


def is_ping(pkt: Packet) -> bool:
    """True for a Control packet addressed to port 0 without ACK (a request, not a reply)."""
    return pkt.protocol == PacketProtocol.CONTROL and pkt.dst_port == PING_PORT and not pkt.flags & Flags.ACK


def build_reply(request: Packet, local: Addr | None = None) -> Packet:
    """The pong for ``request`` by Go's rule; ``local`` is our address (default: the request's destination)."""
    return Packet(
        Flags.ACK, PacketProtocol.CONTROL, local if local is not None else request.dst, request.src,
        PING_PORT, request.src_port, seq=request.seq, ack=(request.seq + 1) % _SEQ_MOD, payload=request.payload,
    )  # fmt: skip


def is_reply_to(reply: Packet, request: Packet) -> bool:
    """Does ``reply`` answer ``request``?  Checks every field the reply rule fixes (SVC-042)."""
    return (
        reply.protocol == PacketProtocol.CONTROL
        and reply.flags == Flags.ACK
        and reply.src_port == PING_PORT
        and reply.dst_port == request.src_port
        and reply.dst == request.src
        and reply.seq == request.seq
        and reply.ack == (request.seq + 1) % _SEQ_MOD
        and reply.payload == request.payload
    )


def _not_ping(field: str, rule: str) -> DecodeError:
    return DecodeError(ErrorCode.BAD_VALUE, field, rule, section="6.3", requirement="SVC-041")


def decode_ping(data: bytes | bytearray | memoryview, profile: Profile = DEFAULT_PROFILE) -> Packet:
    """A packet that must be a ping request (Control, port 0, no ACK)."""
    pkt = decode_packet(data, profile)
    if pkt.protocol != PacketProtocol.CONTROL:
        raise _not_ping("header.protocol", f"protocol {pkt.protocol} is not Control (3)")
    if pkt.dst_port != PING_PORT:
        raise _not_ping("header.dst_port", f"Control packet to port {pkt.dst_port}, pings go to port 0")
    if pkt.flags & Flags.ACK:
        raise _not_ping("header.flags", "a ping request does not carry ACK")
    return pkt


def decode_pong(data: bytes | bytearray | memoryview, profile: Profile = DEFAULT_PROFILE) -> Packet:
    """A packet that must be a ping reply (Control, ACK only, source port 0, ack = seq + 1)."""
    pkt = decode_packet(data, profile)
    if pkt.protocol != PacketProtocol.CONTROL:
        raise _not_ping("header.protocol", f"protocol {pkt.protocol} is not Control (3)")
    if pkt.src_port != PING_PORT:
        raise DecodeError(
            ErrorCode.BAD_VALUE, "header.src_port", f"reply from port {pkt.src_port}, must be 0", section="6.3",
            requirement="SVC-042",
        )  # fmt: skip
    if pkt.flags != Flags.ACK:
        raise DecodeError(
            ErrorCode.BAD_FLAGS, "header.flags", f"reply flags {pkt.flags:#x}, must be ACK only", section="6.3",
            requirement="SVC-042",
        )  # fmt: skip
    if pkt.ack != (pkt.seq + 1) % _SEQ_MOD:
        raise DecodeError(
            ErrorCode.BAD_VALUE, "header.ack", f"ack {pkt.ack} is not seq + 1 ({pkt.seq} + 1)", section="6.3",
            requirement="SVC-042",
        )  # fmt: skip
    return pkt


DECODERS: dict[str, Callable[[bytes], object]] = {
    "ping@draft": lambda b: decode_ping(b, Profile.DRAFT),
    "ping@go-interop": lambda b: decode_ping(b, Profile.GO_INTEROP),
    "pong@draft": lambda b: decode_pong(b, Profile.DRAFT),
    "pong@go-interop": lambda b: decode_pong(b, Profile.GO_INTEROP),
}

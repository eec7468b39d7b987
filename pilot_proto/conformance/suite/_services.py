"""Helpers for the service tests (draft 10.5, 10.6, 14): read a service's reply bytes, accept the target's dial.

Every wait is bounded (x ``--timeout-scale``).  Replies are decoded here with ``struct`` from the draft's layouts,
not with the package's decoders, so a defect of our own codec cannot hide the same defect in a target.
"""

from __future__ import annotations

import struct
import time
from typing import Literal

from pilot_proto.conformance.harness import ACK, FIN, RST, STREAM, SYN, Peer, Stream
from pilot_proto.wire.header import Packet

End = Literal["fin", "rst", "open"]
FRAME_HEAD = struct.Struct(">II")  # type u32 BE, length u32 BE (data exchange, task submission)


def collect(s: Stream, duration: float, *, want: int | None = None) -> tuple[bytes, End]:
    """What the target sends on ``s`` within ``duration`` s (acknowledging it), until FIN or RST, or until ``want``
    bytes have come.  Returns the bytes and how the wait ended."""
    peer = s.peer
    deadline = time.monotonic() + peer.wait(duration)
    start = len(s.received)
    # segments for this connection that arrived while the test waited on another one
    for item in list(peer.inbound):
        p = item.packet
        if p is None or not s.mine(p):
            continue
        if p.flags & RST:
            return bytes(s.received[start:]), "rst"
        if s.absorb(p):
            s.ack()
        if s.fin_seen:
            return bytes(s.received[start:]), "fin"
    while (left := (deadline - time.monotonic()) / peer.target.scale) > 0:
        if want is not None and len(s.received) - start >= want:
            break
        p = s.reply(left, lambda p: s.is_data(p) or bool(p.flags & (FIN | RST)))
        if p is None:
            break
        if p.flags & RST:
            return bytes(s.received[start:]), "rst"
        s.absorb(p)
        s.ack()
        if s.fin_seen:
            return bytes(s.received[start:]), "fin"
    return bytes(s.received[start:]), "open"


def wait_acked(s: Stream, duration: float = 2.0) -> bool:
    """True once the target has acknowledged everything sent on ``s`` (so a service has read it)."""

    def acks_all(p: Packet) -> bool:
        return s.mine(p) and bool(p.flags & ACK) and p.ack == s.snd_nxt

    if any(i.packet is not None and acks_all(i.packet) for i in s.peer.inbound):
        return True
    return s.peer.expect_packet(acks_all, duration) is not None


def release(s: Stream) -> None:
    """Reset ``s`` (in window) so the target does not keep it."""
    s.send(b"", RST | ACK)


def frames(buf: bytes, header: struct.Struct = FRAME_HEAD) -> tuple[list[tuple[int, bytes]], bytes]:
    """Split ``type u32 BE || length u32 BE || payload`` frames (data exchange, task submission); returns the
    complete frames and the bytes left over."""
    out: list[tuple[int, bytes]] = []
    off = 0
    while len(buf) - off >= header.size:
        ftype, n = header.unpack_from(buf, off)
        if len(buf) - off - header.size < n:
            break
        out.append((ftype, buf[off + header.size : off + header.size + n]))
        off += header.size + n
    return out, buf[off:]


def accept(peer: Peer, port: int, duration: float, since: int = 0) -> Stream | None:
    """Wait for the target to dial our ``port`` and answer its SYN with a SYN-ACK; the connection, or None.

    A SYN among ``peer.inbound[since:]`` (it came while the test read something else) is taken first."""

    def is_syn(p: Packet) -> bool:
        return p.protocol == STREAM and p.dst_port == port and p.flags & (SYN | ACK) == SYN

    # a SYN that arrived while the test waited for something else counts too
    syn = next((i.packet for i in peer.inbound[since:] if i.packet is not None and is_syn(i.packet)), None)
    if syn is None:
        syn = peer.expect_packet(is_syn, duration)
    if syn is None:
        return None
    s = Stream(peer, syn.src_port, src_port=port)
    s.irs = syn.seq
    s.rcv_nxt = (syn.seq + 1) & 0xFFFFFFFF
    s.send(b"", SYN | ACK)
    s.snd_nxt = s.max_sent = (s.isn + 1) & 0xFFFFFFFF
    return s

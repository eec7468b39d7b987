"""Passive mode (``--pcap FILE``): judge a capture of any two implementations talking, with no stimulus.

Reads every UDP datagram of the capture (scapy; any link type it knows) and hands the suite's passive
tests a list of :class:`Datagram`.  Without a key log only the unencrypted parts can be judged: frame
magics and sizes, PILA signatures, nonce reuse per sender and prefix, and plaintext after a key exchange.

With ``--keylog FILE`` (the format is defined in :mod:`pilot_proto.tunnel.dangerous`: one
``PILS <node> <node> <key hex>`` line per session; ``pilot-proto node --keylog`` writes it) every PILS
frame a logged key opens becomes an :class:`Opened` record, and the inner-packet checks below run:

* :func:`inner_header_violations` -- the inner header's CRC-32 and Payload Length (draft 6.2, 6.5);
* :func:`wrong_aad_frames` -- a frame that opens under a logged key only with the OTHER node's ID as AAD
  was sealed with the wrong AAD, or re-labelled with another sender (SEC-006);
* :func:`sender_binding_violations` -- the inner source node equals the PILS sender (SEC-027);
* :func:`nonce_reuse_violations` -- no (key, nonce) twice with other ciphertext, across BOTH directions
  (one key serves both, so this catches a prefix collision the per-sender check cannot; NONCE-004);
* :func:`counter_order_violations` -- per (key, sender, prefix) the counter only grows (NONCE-003; the
  capture is assumed taken at an endpoint or on a path that does not reorder, like 127.0.0.1);
* :func:`stream_violations` -- per stream connection (draft 8): no ACK for sequence space the other side
  never sent, and no data beyond the right edge of the receiver's advertised window (Window counts
  4096-byte segments, SES-080, draft 8.7), one byte over allowed for a zero-window probe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pilot_proto.errors import DecodeError
from pilot_proto.profile import Profile
from pilot_proto.tunnel.dangerous import KeyLog, open_pils, sender_aad
from pilot_proto.wire.header import Flags, Packet, PacketProtocol, decode_packet

__all__ = [
    "MSS",
    "Datagram",
    "Opened",
    "Violation",
    "counter_order_violations",
    "inner_header_violations",
    "nonce_reuse_violations",
    "open_capture",
    "read_capture",
    "sender_binding_violations",
    "stream_violations",
    "wrong_aad_frames",
]

#: The draft's MSS (8.7): the Window field counts segments of this size (SES-080).
MSS = 4096


@dataclass(frozen=True)
class Datagram:
    t: float
    src: tuple[str, int]
    dst: tuple[str, int]
    data: bytes


def read_capture(path: Path, limit: int = 1_000_000) -> list[Datagram]:
    """Every UDP payload in the capture, in capture order (at most ``limit``)."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import PcapReader

    out: list[Datagram] = []
    with PcapReader(str(path)) as reader:
        for pkt in reader:
            if UDP not in pkt:
                continue
            ip = pkt[IP] if IP in pkt else pkt[IPv6] if IPv6 in pkt else None  # noqa: SIM401 (scapy packets)
            if ip is None:
                continue
            udp = pkt[UDP]
            out.append(Datagram(float(pkt.time), (str(ip.src), int(udp.sport)), (str(ip.dst), int(udp.dport)),
                                bytes(udp.payload)))  # fmt: skip
            if len(out) >= limit:
                break
    return out


@dataclass(frozen=True)
class Opened:
    """A captured PILS frame that a logged key opened."""

    d: Datagram
    key: bytes
    sender: int
    inner: bytes

    @property
    def prefix(self) -> bytes:
        return self.d.data[8:12]

    @property
    def counter(self) -> int:
        return int.from_bytes(self.d.data[12:20], "big")

    @property
    def nonce(self) -> bytes:
        return self.d.data[8:20]


@dataclass(frozen=True)
class Violation:
    frame: Opened
    reason: str


def open_capture(capture: Iterable[Datagram], keylog: KeyLog) -> tuple[list[Opened], int]:
    """The PILS frames of ``capture`` that ``keylog`` opens, in order, and how many PILS frames none opened."""
    opened: list[Opened] = []
    unopened = 0
    for d in capture:
        if d.data[:4] != b"PILS" or len(d.data) < 36:
            continue
        got = keylog.open_pils_keyed(d.data)
        if got is None:
            unopened += 1
            continue
        opened.append(Opened(d, got[0], int.from_bytes(d.data[4:8], "big"), got[1]))
    return opened, unopened


def wrong_aad_frames(capture: Iterable[Datagram], keylog: KeyLog) -> list[tuple[Datagram, int]]:
    """PILS frames no logged key opens under their sender's AAD but one opens under the AAD of the other node of
    its pair: ``(frame, the node ID its AAD names)`` (SEC-006).  Frames no key opens at all are not judged."""
    from cryptography.exceptions import InvalidTag

    out = []
    for d in capture:
        if d.data[:4] != b"PILS" or len(d.data) < 36 or keylog.open_pils_keyed(d.data) is not None:
            continue
        sender = int.from_bytes(d.data[4:8], "big")
        found = None
        for pair, keys in keylog.keys.items():
            for other in pair - {sender} if sender in pair else pair:
                for key in keys:
                    try:
                        open_pils(key, d.data, aad=sender_aad(other))
                    except InvalidTag:
                        continue
                    found = other
        if found is not None:
            out.append((d, found))
    return out


def _decoded(opened: Iterable[Opened], profile: Profile) -> Iterable[tuple[Opened, Packet]]:
    for o in opened:
        try:
            yield o, decode_packet(o.inner, profile, check_version=False)
        except DecodeError:
            continue  # judged by inner_header_violations


def inner_header_violations(opened: Iterable[Opened], profile: Profile) -> list[Violation]:
    """Inner packets whose CRC-32 is wrong or whose Payload Length disagrees with the bytes (PKT-010, PKT-002)."""
    out = []
    for o in opened:
        try:
            decode_packet(o.inner, profile, check_version=False)
        except DecodeError as exc:
            out.append(Violation(o, f"{exc.code.name}: {exc}"))
    return out


def sender_binding_violations(opened: Iterable[Opened], profile: Profile) -> list[Violation]:
    """Inner packets whose source node is not the PILS frame's sender (SEC-027)."""
    return [
        Violation(o, f"inner source node {p.src.node} in a frame from sender {o.sender}")
        for o, p in _decoded(opened, profile)
        if p.src.node != o.sender
    ]


def nonce_reuse_violations(opened: Iterable[Opened]) -> list[Violation]:
    """A (key, nonce) pair sealing two different frames, in either direction (NONCE-004, CONS-009)."""
    seen: dict[tuple[bytes, bytes], bytes] = {}
    out = []
    for o in opened:
        prev = seen.setdefault((o.key, o.nonce), o.d.data)
        if prev != o.d.data:
            out.append(Violation(o, f"nonce {o.nonce.hex()} already sealed another frame under this key"))
    return out


def counter_order_violations(opened: Iterable[Opened]) -> list[Violation]:
    """Per (key, sender, prefix), each new frame's counter exceeds every earlier one (NONCE-003).

    An identical datagram seen again is a duplicate (or the other end's copy), not a violation."""
    top: dict[tuple[bytes, int, bytes], int] = {}
    seen: set[bytes] = set()
    out = []
    for o in opened:
        if o.d.data in seen:
            continue
        seen.add(o.d.data)
        stream = (o.key, o.sender, o.prefix)
        last = top.get(stream)
        if last is not None and o.counter <= last:
            out.append(Violation(o, f"counter {o.counter} after counter {last} (prefix {o.prefix.hex()})"))
        else:
            top[stream] = o.counter
    return out


def _after(a: int, b: int) -> bool:
    """RFC 1982 serial arithmetic on 32-bit sequence numbers: ``a`` is after ``b`` (SES-031)."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


Half = tuple[int, int, int, int]  # (src node, src port, dst node, dst port): one direction of a connection


def stream_violations(opened: Iterable[Opened], profile: Profile) -> list[Violation]:
    """Sequence arithmetic and window rules per stream connection (draft 8; SES-030, SES-031, SES-080).

    For each direction ``d`` the highest sequence number sent so far (``snd_max``, SYN and FIN count one)
    and the right edge ``ack + window * MSS`` the other side advertised for it are tracked; a SYN starts
    ``d`` afresh.  A violation is an ACK that acknowledges more than the other side ever sent, or payload
    ending more than one byte (a zero-window probe) beyond the advertised right edge.
    """
    snd_max: dict[Half, int] = {}
    edge: dict[Half, int] = {}
    out = []
    for o, p in _decoded(opened, profile):
        if p.protocol != PacketProtocol.STREAM:
            continue
        d: Half = (p.src.node, p.src_port, p.dst.node, p.dst_port)
        r: Half = (p.dst.node, p.dst_port, p.src.node, p.src_port)
        syn, fin = bool(p.flags & Flags.SYN), bool(p.flags & Flags.FIN)
        if syn:
            snd_max.pop(d, None)
            edge.pop(d, None)
        if p.flags & Flags.ACK and not p.flags & Flags.RST:
            sent = snd_max.get(r)
            if sent is not None and _after(p.ack, sent):
                out.append(Violation(o, f"ACK {p.ack} but the other side only sent up to {sent}: {p.describe()}"))
            else:
                right = (p.ack + p.window * MSS) & 0xFFFFFFFF
                if r not in edge or _after(right, edge[r]):
                    edge[r] = right
        start = (p.seq + syn) & 0xFFFFFFFF
        data_end = (start + len(p.payload)) & 0xFFFFFFFF
        if p.payload and d in edge and _after(data_end, (edge[d] + 1) & 0xFFFFFFFF):
            out.append(Violation(o, f"data up to {data_end} beyond the advertised right edge {edge[d]}"))
        end = (data_end + fin) & 0xFFFFFFFF
        if d not in snd_max or _after(end, snd_max[d]):
            snd_max[d] = end
    return out

"""Per-test wire log: every datagram in and out, timestamped and decoded, written as JSONL and pcap.

The pcap uses link type 101 (raw IP) with an IPv4 (or IPv6) and UDP header built here, so Wireshark
or scapy (``pilot_proto.wire.scapy_layers`` binds the Pilot layers) can dissect it.  The decoded form
is what the harness understood of each datagram (frame type, sender, nonce counter, and the inner
packet when the harness held the key).
"""

from __future__ import annotations

import ipaddress
import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Record", "WireLog"]

_PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)


@dataclass(slots=True)
class Record:
    t: float  # seconds since the log started
    wall: float  # UNIX time
    direction: str  # "out" (harness -> target) or "in"
    local: tuple[str, int]
    remote: tuple[str, int]
    data: bytes
    decoded: str = ""


@dataclass
class WireLog:
    """Append-only record of one test's datagrams (bounded: ``limit`` records, the rest only counted)."""

    limit: int = 20000
    records: list[Record] = field(default_factory=list)
    notes: list[tuple[float, str]] = field(default_factory=list)
    dropped: int = 0
    t0: float = field(default_factory=time.monotonic)

    def add(
        self, direction: str, local: tuple[str, int], remote: tuple[str, int], data: bytes, decoded: str = ""
    ) -> Record:
        rec = Record(time.monotonic() - self.t0, time.time(), direction, local, remote, bytes(data), decoded)
        if len(self.records) < self.limit:
            self.records.append(rec)
        else:
            self.dropped += 1
        return rec

    def note(self, text: str) -> None:
        """A harness remark (e.g. 'waiting 1.0 s for silence'), kept with the datagrams."""
        self.notes.append((time.monotonic() - self.t0, text))

    def to_jsonl(self, path: Path) -> None:
        with path.open("w", encoding="utf-8") as fh:
            for r in self.records:
                fh.write(
                    json.dumps(
                        {
                            "t": round(r.t, 6),
                            "dir": r.direction,
                            "src": f"{r.local[0]}:{r.local[1]}"
                            if r.direction == "out"
                            else f"{r.remote[0]}:{r.remote[1]}",
                            "dst": f"{r.remote[0]}:{r.remote[1]}"
                            if r.direction == "out"
                            else f"{r.local[0]}:{r.local[1]}",
                            "len": len(r.data),
                            "decoded": r.decoded,
                            "hex": r.data.hex(),
                        }
                    )
                    + "\n"
                )
            for t, text in self.notes:
                fh.write(json.dumps({"t": round(t, 6), "note": text}) + "\n")
            if self.dropped:
                fh.write(json.dumps({"note": f"{self.dropped} further datagrams not recorded"}) + "\n")

    def to_pcap(self, path: Path) -> None:
        with path.open("wb") as fh:
            fh.write(_PCAP_HEADER)
            for r in self.records:
                src, dst = (r.local, r.remote) if r.direction == "out" else (r.remote, r.local)
                pkt = _ip_udp(src, dst, r.data)
                sec = int(r.wall)
                fh.write(struct.pack("<IIII", sec, int((r.wall - sec) * 1e6), len(pkt), len(pkt)))
                fh.write(pkt)


def _ip_udp(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    udp_len = 8 + len(payload)
    udp = struct.pack(">HHHH", src[1], dst[1], udp_len & 0xFFFF, 0) + payload
    a, b = ipaddress.ip_address(src[0]), ipaddress.ip_address(dst[0])
    if a.version == 6 or b.version == 6:
        a6 = a if a.version == 6 else ipaddress.IPv6Address(f"::ffff:{a}")
        b6 = b if b.version == 6 else ipaddress.IPv6Address(f"::ffff:{b}")
        return struct.pack(">IHBB16s16s", 6 << 28, udp_len & 0xFFFF, 17, 64, a6.packed, b6.packed) + udp
    total = 20 + udp_len
    head = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total & 0xFFFF, 0, 0, 64, 17, 0, a.packed, b.packed)
    csum = _ip_checksum(head)
    return head[:10] + struct.pack(">H", csum) + head[12:] + udp


def _ip_checksum(head: bytes) -> int:
    s = sum(struct.unpack(">10H", head))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return int(~s & 0xFFFF)

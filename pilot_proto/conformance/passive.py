"""Passive mode (``--pcap FILE``): judge a capture of any two implementations talking, with no stimulus.

Reads every UDP datagram of the capture (scapy; any link type it knows) and hands the suite's passive
tests a list of :class:`Datagram`.  Without a key log only the unencrypted parts can be judged: frame
magics and sizes, PILA signatures, nonce reuse per sender and prefix, and plaintext after a key exchange.
(The ``--keylog`` format that would let the suite decrypt captures is not built yet.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Datagram", "read_capture"]


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

"""A datagram tap: every datagram in and out, with time and decoded form, to a ring, a wire log and a pcap.

:class:`Tap` is what a :class:`~pilot_proto.drivers.udp.NodeDriver` (``NodeDriver(..., tap=tap)``)
and a :class:`~pilot_proto.testing.scripted_peer.ScriptedPeer` (``ScriptedPeer(..., tap=tap)``)
report to.  Each datagram becomes a :class:`TapEntry` that goes to

* an in-memory ring of the last ``ring_size`` entries (:attr:`Tap.ring`);
* optionally a JSON-lines **wire log** (``wire_log=path``): one object per datagram with ``t``
  (seconds since the epoch), ``dir`` (``in``/``out``), ``local``, ``remote`` (``host:port``),
  ``len``, ``hex`` (the bytes) and ``decoded`` (what :func:`describe` reads from the bytes alone:
  frame kind, sender, nonce counter, key-exchange keys, the inner packet of a PILT, beacon type);
* optionally a **pcap** (``pcap=path``), written with scapy's ``PcapWriter`` as Ethernet/IPv4/UDP
  (IPv6 for IPv6 addresses) between the real addresses, so Wireshark opens it and
  :mod:`pilot_proto.scapy` dissects it (``pilot_proto.scapy.read_pcap``).

The tap records what crosses the socket: a driver's outbound impairment happens before the tap
sees a datagram, its inbound impairment after.  ``clock`` (default ``time.time``) stamps entries;
pass a fake clock for repeatable logs.  PILS payloads stay encrypted unless the tap is given a
:class:`~pilot_proto.tunnel.dangerous.KeyLog` (the scripted peer writes its session keys to one);
a frame sealed before its key reached the key log stays sealed in the live wire log, so decrypt a
finished capture with ``KeyLog.load(path).open_pils(datagram)``.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, Protocol

from pilot_proto.errors import PilotError
from pilot_proto.profile import Profile
from pilot_proto.tunnel.dangerous import KeyLog
from pilot_proto.wire.frames import (
    AuthKeyExchangeFrame,
    EncryptedFrame,
    KeyExchangeFrame,
    PlaintextFrame,
    PunchFrame,
    decode_frame,
    is_beacon_message,
)
from pilot_proto.wire.header import Packet, decode_packet

__all__ = ["DatagramTap", "Tap", "TapEntry", "describe", "describe_packet"]

Direction = Literal["in", "out"]
UdpAddr = tuple[str, int]


class DatagramTap(Protocol):
    """What drivers and the scripted peer report to: one call per datagram crossing their socket."""

    def record(self, direction: Direction, local: UdpAddr, remote: UdpAddr, data: bytes) -> object: ...


@dataclass(frozen=True, slots=True)
class TapEntry:
    """One datagram seen by a tap (``local`` is the tapped socket, ``remote`` the other end)."""

    time: float
    direction: Direction
    local: UdpAddr
    remote: UdpAddr
    data: bytes

    @property
    def src(self) -> UdpAddr:
        return self.remote if self.direction == "in" else self.local

    @property
    def dst(self) -> UdpAddr:
        return self.local if self.direction == "in" else self.remote

    def decoded(self, profile: Profile = Profile.GO_INTEROP, keylog: KeyLog | None = None) -> dict[str, Any]:
        return describe(self.data, profile, keylog)

    def to_json(self, profile: Profile = Profile.GO_INTEROP, keylog: KeyLog | None = None) -> dict[str, Any]:
        return {
            "t": self.time,
            "dir": self.direction,
            "local": f"{self.local[0]}:{self.local[1]}",
            "remote": f"{self.remote[0]}:{self.remote[1]}",
            "len": len(self.data),
            "hex": self.data.hex(),
            "decoded": self.decoded(profile, keylog),
        }


def describe_packet(pkt: Packet) -> dict[str, Any]:
    """The header fields of an inner packet as a JSON-able dict (payload as its length)."""
    return {
        "version": pkt.version,
        "flags": int(pkt.flags),
        "protocol": int(pkt.protocol),
        "src": str(pkt.src),
        "dst": str(pkt.dst),
        "src_port": pkt.src_port,
        "dst_port": pkt.dst_port,
        "seq": pkt.seq,
        "ack": pkt.ack,
        "window": pkt.window,
        "payload_len": len(pkt.payload),
        "summary": pkt.describe(),
    }


def describe(data: bytes, profile: Profile = Profile.GO_INTEROP, keylog: KeyLog | None = None) -> dict[str, Any]:
    """What can be read from a datagram (lenient by default, so odd frames still show).

    With a ``keylog`` a PILS frame a logged key opens also shows its inner ``packet``.
    """
    if is_beacon_message(data):
        return {"kind": "beacon", "type": data[0]}
    try:
        frame = decode_frame(data, profile)
    except PilotError as exc:
        return {"kind": "?", "error": exc.code.value, "detail": str(exc)}
    if isinstance(frame, EncryptedFrame):
        pils: dict[str, Any] = {
            "kind": "PILS",
            "sender": frame.sender,
            "prefix": frame.nonce_prefix.hex(),
            "counter": frame.counter,
            "ciphertext_len": len(frame.ciphertext),
        }
        inner = keylog.open_pils(data) if keylog is not None else None
        if inner is not None:
            try:
                pils["packet"] = describe_packet(decode_packet(inner, profile, check_version=False))
            except PilotError as exc:
                pils["error"] = exc.code.value
        return pils
    if isinstance(frame, PlaintextFrame):
        out: dict[str, Any] = {"kind": "PILT"}
        try:
            out["packet"] = describe_packet(decode_packet(frame.packet, profile, check_version=False))
        except PilotError as exc:
            out["error"] = exc.code.value
        return out
    if isinstance(frame, AuthKeyExchangeFrame):
        return {
            "kind": "PILA",
            "sender": frame.sender,
            "x25519": frame.x25519_public.hex(),
            "ed25519": frame.ed25519_public.hex(),
            "trailer_len": len(frame.trailer),
        }
    if isinstance(frame, KeyExchangeFrame):
        return {"kind": "PILK", "sender": frame.sender, "x25519": frame.x25519_public.hex()}
    assert isinstance(frame, PunchFrame)
    return {"kind": "PILP", "sender": frame.sender}


class _PcapSink:
    """Ethernet/IP/UDP records through scapy's PcapWriter (imported only when a pcap is asked for)."""

    def __init__(self, path: str | Path) -> None:
        from scapy.utils import PcapWriter

        self._writer = PcapWriter(str(path), linktype=1, sync=False)

    def write(self, entry: TapEntry) -> None:
        from scapy.layers.inet import IP, UDP
        from scapy.layers.inet6 import IPv6
        from scapy.layers.l2 import Ether

        (sh, sp), (dh, dport) = entry.src, entry.dst
        ip: Any = IPv6(src=sh, dst=dh) if ipaddress.ip_address(sh).version == 6 else IP(src=sh, dst=dh, flags=0)
        pkt = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip / UDP(sport=sp, dport=dport) / entry.data
        pkt.time = entry.time
        self._writer.write(pkt)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class Tap:
    """Records datagrams to a bounded ring, and optionally to a JSON-lines wire log and a pcap file."""

    def __init__(
        self,
        *,
        ring_size: int = 10_000,
        wire_log: str | Path | IO[str] | None = None,
        pcap: str | Path | None = None,
        clock: Callable[[], float] = time.time,
        profile: Profile = Profile.GO_INTEROP,
        keylog: KeyLog | None = None,
    ) -> None:
        if ring_size < 1:
            raise ValueError("ring_size must be >= 1")
        self.ring: deque[TapEntry] = deque(maxlen=ring_size)
        self.clock = clock
        self.profile = profile
        #: Keys the wire log uses to show the inner packet of PILS frames (filled in as sessions are made).
        self.keylog = keylog
        #: Datagrams recorded in each direction (the ring may hold fewer).
        self.counts: dict[str, int] = {"in": 0, "out": 0}
        self._own_log = isinstance(wire_log, str | Path)
        self._log: IO[str] | None = (
            open(wire_log, "w", encoding="utf-8")  # noqa: SIM115 -- closed in close()
            if isinstance(wire_log, str | Path)
            else wire_log
        )
        self._pcap = _PcapSink(pcap) if pcap is not None else None
        self.pcap_path = Path(pcap) if pcap is not None else None

    def record(self, direction: Direction, local: UdpAddr, remote: UdpAddr, data: bytes) -> TapEntry:
        """Record one datagram; returns its entry."""
        entry = TapEntry(self.clock(), direction, (str(local[0]), int(local[1])), (str(remote[0]), int(remote[1])),
                         bytes(data))  # fmt: skip
        self.ring.append(entry)
        self.counts[direction] += 1
        if self._log is not None:
            self._log.write(json.dumps(entry.to_json(self.profile, self.keylog), separators=(",", ":")) + "\n")
        if self._pcap is not None:
            self._pcap.write(entry)
        return entry

    def entries(self, direction: Direction | None = None) -> list[TapEntry]:
        return [e for e in self.ring if direction is None or e.direction == direction]

    def flush(self) -> None:
        if self._log is not None:
            self._log.flush()
        if self._pcap is not None:
            self._pcap.flush()

    def close(self) -> None:
        if self._log is not None:
            if self._own_log:
                self._log.close()
            else:
                self._log.flush()
            self._log = None
        if self._pcap is not None:
            self._pcap.close()
            self._pcap = None

    def __enter__(self) -> Tap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

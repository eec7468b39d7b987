"""Fuzz a live Pilot implementation over UDP: mutated frames outside and inside a real tunnel.

``pilot-proto fuzz --target HOST:PORT`` (a loopback IP literal, 127.0.0.0/8 or ::1; nothing is
resolved; the campaign's own socket binds loopback too) keys a real tunnel to the target with a
:class:`~pilot_proto.testing.scripted_peer.ScriptedPeer` and then sends batches of:

* **outside** the tunnel: mutated tunnel frames and beacon messages (PILT/PILS/PILK/PILA/PILP seeds
  from our vectors, bytes flipped, truncated, spliced, dictionary tokens), and PILS frames sealed
  under the live key with a wrong sender, counter or tag;
* **inside** the tunnel: mutated inner packets (headers with any flags, ports, lengths and CRCs,
  addressed to the target) sealed correctly under the live session, so the target's session layer
  has to judge them.

**Beacon messages are never sent** (no datagram whose first byte is below 0x10, draft 9 / 7): a
PunchCommand names an address to send to, and an implementation that obeys unauthenticated ones
(the Go reference does: erratum E-OBS-4) would send punches wherever a mutation pointed -- the
campaign must never make a target send anywhere but where it already talks.  :func:`outside_datagram`
enforces it and ``tests/test_fuzz_network.py`` checks it over many batches.

After every batch a **liveness check** sends a Control ping (draft 6.3, port 0) and waits for the
pong (three tries; a fresh tunnel if the old session is gone).  A target that stops answering is a
*finding*: the batch that preceded it is saved (JSON, hex) so it can be replayed.
"""

from __future__ import annotations

import ipaddress
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pilot_proto.fuzzing.engine import Mutator
from pilot_proto.fuzzing.seeds import all_seeds
from pilot_proto.profile import Profile
from pilot_proto.wire import control
from pilot_proto.wire.frames import is_beacon_message
from pilot_proto.wire.header import decode_packet

__all__ = ["NetworkFinding", "NetworkResult", "fuzz_target"]


@dataclass
class NetworkFinding:
    batch: int
    reason: str
    inputs: list[tuple[str, str]]  # (where, hex)
    path: Path | None = None


@dataclass
class NetworkResult:
    target: tuple[str, int]
    profile: str
    batches: int = 0
    outside: int = 0
    inside: int = 0
    seconds: float = 0.0
    alive_checks: int = 0
    ping_rtts: list[float] = field(default_factory=list)
    rehandshakes: int = 0
    findings: list[NetworkFinding] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        rtts = sorted(self.ping_rtts)
        return {
            "target": f"{self.target[0]}:{self.target[1]}",
            "profile": self.profile,
            "batches": self.batches,
            "sent_outside_tunnel": self.outside,
            "sent_inside_tunnel": self.inside,
            "seconds": round(self.seconds, 2),
            "liveness_checks": self.alive_checks,
            "median_ping_ms": round(rtts[len(rtts) // 2] * 1000, 3) if rtts else None,
            "rehandshakes": self.rehandshakes,
            "findings": [{"batch": f.batch, "reason": f.reason, "path": str(f.path) if f.path else None}
                         for f in self.findings],
        }  # fmt: skip


def check_target(host: str) -> str:
    """The target host as a loopback IP literal.  ValueError otherwise."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"target host {host!r} is not an IP address (names are never resolved)") from None
    if not ip.is_loopback:
        raise ValueError(f"target {host} is not a loopback address (campaigns run against 127.0.0.0/8 or ::1 only)")
    return str(ip)


def _frame_corpus() -> list[bytes]:
    return [s for s in all_seeds() if s[:3] == b"PIL"] or [b"PILT"]


def outside_datagram(frames: Mutator) -> bytes:
    """A mutated tunnel frame that is never a beacon message (first byte < 0x10 is one, on Go's rule too)."""
    for _ in range(64):
        data = frames.mutate()
        if data and not is_beacon_message(data):
            return data
    return b"PILT"


def _packet_corpus() -> list[bytes]:
    out = []
    for s in all_seeds():
        try:
            decode_packet(s, check_version=False)
        except Exception:
            continue
        out.append(s)
    return out or [bytes(34)]


class _Session:
    """A ScriptedPeer with a live tunnel to the target, re-created when the target drops the session."""

    def __init__(self, target: tuple[str, int], profile: Profile, node_id: int, timeout: float) -> None:
        self.target, self.profile, self.node_id, self.timeout = target, profile, node_id, timeout
        self.peer: object = None
        self.seq = 0
        self.open()

    def open(self) -> None:
        from pilot_proto.testing.scripted_peer import ScriptedPeer

        if self.peer is not None:
            self.peer.close()  # type: ignore[attr-defined]
        peer = ScriptedPeer(self.node_id, self.target, profile=self.profile, max_records=256)
        self.peer = peer
        peer.handshake(timeout=self.timeout, retry=min(1.0, self.timeout / 3))

    def ping(self, timeout: float) -> float | None:
        """One Control ping round trip (seconds), or None."""
        from pilot_proto.testing.scripted_peer import ScriptedPeer

        peer = self.peer
        assert isinstance(peer, ScriptedPeer)
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        req = control.build_ping(peer.addr, peer.target_addr, 49152, self.seq, b"fuzz-liveness")
        start = time.monotonic()
        peer.send_packet(req)
        got = peer.expect_packet(lambda p: control.is_reply_to(p, req), timeout=timeout)
        return time.monotonic() - start if got is not None else None


def fuzz_target(
    target: tuple[str, int],
    *,
    profile: Profile | str = Profile.DRAFT,
    seconds: float | None = None,
    batches: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    node_id: int = 0x0F0221,
    save_dir: Path | None = None,
    timeout: float = 2.0,
    progress: Callable[[NetworkResult], None] | None = None,
) -> NetworkResult:
    """Run the campaign until ``seconds`` or ``batches`` run out (or the target stops answering)."""
    from pilot_proto.testing.scripted_peer import ScriptedPeer

    if seconds is None and batches is None:
        raise ValueError("give seconds or batches")
    prof = Profile.parse(profile)
    host = check_target(target[0])
    addr = (host, int(target[1]))
    rng = random.Random(seed)
    frames = Mutator(rng, _frame_corpus(), max_len=1400)
    packets = Mutator(rng, _packet_corpus(), max_len=1400)
    result = NetworkResult(addr, prof.value)
    start = time.monotonic()
    session = _Session(addr, prof, node_id, timeout * 2)
    batch_no = 0
    while True:
        if batches is not None and batch_no >= batches:
            break
        if seconds is not None and time.monotonic() - start >= seconds:
            break
        batch_no += 1
        peer = session.peer
        assert isinstance(peer, ScriptedPeer)
        sent: list[tuple[str, str]] = []
        for _ in range(batch_size):
            r = rng.random()
            if r < 0.45:
                data = outside_datagram(frames)
                peer.send_raw(data)
                result.outside += 1
                sent.append(("outside", data.hex()))
            elif r < 0.55 and peer.sessions:
                inner = packets.mutate()
                data = peer.seal(inner, sender=rng.choice([node_id ^ 1, 0, 0xFFFFFFFF])) if rng.random() < 0.5 else (
                    peer.seal(inner, counter=rng.randrange(0, 4)))  # fmt: skip
                peer.send_raw(data)
                result.outside += 1
                sent.append(("outside-sealed", data.hex()))
            else:
                pkt = bytearray(packets.mutate())
                if len(pkt) >= 18 and rng.random() < 0.8:  # address it to the target so it is judged
                    pkt[12:16] = peer.target_addr.node.to_bytes(4, "big")
                    pkt[6:10] = node_id.to_bytes(4, "big")
                peer.send_packet(bytes(pkt))
                result.inside += 1
                sent.append(("inside", bytes(pkt).hex()))
        peer.listen(0.01)  # drain what came back; nothing is answered
        result.batches = batch_no
        alive = _alive(session, result, timeout)
        if not alive:
            finding = NetworkFinding(batch_no, "target stopped answering Control ping after this batch", sent)
            if save_dir is not None:
                save_dir.mkdir(parents=True, exist_ok=True)
                finding.path = save_dir / f"network-{host.replace(':', '_')}-{addr[1]}-batch{batch_no}.json"
                record = {"target": f"{host}:{addr[1]}", "profile": prof.value, "seed": seed, "batch": batch_no,
                          "inputs": sent}  # fmt: skip
                finding.path.write_text(json.dumps(record, indent=1))
            result.findings.append(finding)
            break
        if progress is not None:
            result.seconds = time.monotonic() - start
            progress(result)
    result.seconds = time.monotonic() - start
    peer = session.peer
    if isinstance(peer, ScriptedPeer):
        peer.close()
    return result


def _alive(session: _Session, result: NetworkResult, timeout: float) -> bool:
    result.alive_checks += 1
    for attempt in range(3):
        rtt = session.ping(timeout / 2)
        if rtt is not None:
            result.ping_rtts.append(rtt)
            return True
        if attempt >= 1:  # our fuzz may have legitimately replaced or broken the session: key a new one
            try:
                session.open()
                result.rehandshakes += 1
            except TimeoutError:
                return False
    return False

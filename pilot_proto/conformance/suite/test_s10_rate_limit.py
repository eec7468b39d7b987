"""Draft 10.8: SYN rate limiting ("Daemons implement SYN rate limiting to mitigate connection flood attacks").

The draft names no rate, burst, scope or answer, so no count of SYN-ACKs can fail a target: both tests are
SHOULD-level (they count only with ``--strict-should``).  A target that answers every SYN of the burst shows
no limit at that rate and is ``unsupported``.  Our reading of "mitigate" (erratum E-STR-1): the limit is per
source, it recovers, and one source's flood does not refuse another source's SYN.  The flood is bounded
(:data:`BURST` SYNs, well below the node-wide buckets known implementations use) and every half-open
connection it creates is reset afterwards."""

from __future__ import annotations

import time

import pytest

from pilot_proto.conformance.harness import ACK, RST, SYN, Peer, Stream
from pilot_proto.conformance.verdicts import Inconclusive, Unsupported

ECHO = 7
BURST = 30  # SYNs sent back to back from one source (each from its own port)
COLLECT = 1.0  # seconds to collect SYN-ACKs after the burst (x --timeout-scale)
RECOVER = 1.5  # seconds after which a rate-limited source should be admitted again (x --timeout-scale)


def _flood(peer: Peer, n: int = BURST) -> list[Stream]:
    """``n`` SYNs to the echo port, back to back, each from its own port."""
    streams = [peer.stream(ECHO) for _ in range(n)]
    for s in streams:
        s.syn()
    return streams


def _synacks(peer: Peer, streams: list[Stream]) -> set[int]:
    """The source ports of ``streams`` that got a SYN-ACK for their SYN within :data:`COLLECT` seconds."""
    n = len(streams)
    ports = {s.src_port: s for s in streams}
    answered: set[int] = set()
    deadline = time.monotonic() + peer.wait(COLLECT)
    while len(answered) < n and (left := (deadline - time.monotonic()) / peer.target.scale) > 0:
        p = peer.expect_packet(lambda p: p.dst_port in ports and p.flags & (SYN | ACK) == SYN | ACK, left)
        if p is None:
            break
        s = ports[p.dst_port]
        if p.ack == s.snd_nxt:
            answered.add(p.dst_port)
            s.irs, s.rcv_nxt = p.seq, (p.seq + 1) & 0xFFFFFFFF
    return answered


def _reset(streams: list[Stream], answered: set[int]) -> None:
    """Release the half-open connections the flood created (RST in window: seq = ISN + 1)."""
    for s in streams:
        if s.src_port in answered:
            s.send(b"", RST | ACK)


@pytest.mark.level("SHOULD")
@pytest.mark.req("SEC-025", "SES-004")
def test_syn_flood_from_one_source_is_limited_and_recovers(peer: Peer) -> None:
    peer.keyed()
    streams = _flood(peer)
    answered = _synacks(peer, streams)
    _reset(streams, answered)
    if not answered:
        raise Inconclusive(f"none of {BURST} SYNs to the echo port got a SYN-ACK (is anything listening on 7?)")
    if len(answered) == BURST:
        raise Unsupported(f"all {BURST} back-to-back SYNs from one source were accepted: no SYN limit at this rate")
    time.sleep(peer.wait(RECOVER))
    s = peer.stream(ECHO)
    s.syn()
    ans = s.reply(2.0, lambda p: bool(p.flags & (SYN | RST)))
    assert ans is not None and ans.flags & (SYN | ACK) == SYN | ACK, (
        f"{len(answered)} of {BURST} SYNs were admitted, and {RECOVER} s later a new SYN from the same source was "
        f"still refused ({ans.describe() if ans else 'no answer'}): the limit does not recover"
    )
    s.send(b"", RST | ACK)


@pytest.mark.level("SHOULD")
@pytest.mark.req("SEC-025", "SES-004")
def test_syn_flood_does_not_refuse_another_source(make_peer: object) -> None:
    flooder: Peer = make_peer()  # type: ignore[operator]
    other: Peer = make_peer()  # type: ignore[operator]
    flooder.keyed()
    other.keyed()  # keyed before the flood: only the SYN admission is judged
    streams = _flood(flooder)
    s = other.stream(ECHO)
    s.syn()  # at once: the flood's SYNs have just arrived, no bucket has had time to refill
    ans = s.reply(2.0, lambda p: bool(p.flags & (SYN | RST)))
    answered = _synacks(flooder, streams)
    _reset(streams, answered)
    if not answered:
        raise Inconclusive(f"none of {BURST} SYNs to the echo port got a SYN-ACK (is anything listening on 7?)")
    assert ans is not None, (
        f"while one source flooded {BURST} SYNs ({len(answered)} admitted), another source's SYN got no answer"
    )
    assert ans.flags & (SYN | ACK) == SYN | ACK, f"another source's SYN during the flood got {ans.describe()}"
    s.send(b"", RST | ACK)

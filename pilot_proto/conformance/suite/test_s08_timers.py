"""Draft 8.5.1, 8.8: retransmission, RTO backoff and zero-window persist, observed with tolerances.

The target's timers are seconds and cannot be changed from here: each test withholds ACKs (or the
window) and times what the target does.  Bounds are wide (x --timeout-scale) so only a clearly wrong
timer fails."""

from __future__ import annotations

import time

import pytest

from pilot_proto.conformance.harness import Peer, Stream
from pilot_proto.conformance.verdicts import Inconclusive, NotApplicable
from pilot_proto.profile import Profile

ECHO = 7


def _echo_unacked(peer: Peer, data: bytes) -> tuple[Stream, int, float]:
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    s.send(data)
    seg = s.reply(3.0, s.is_data)
    if seg is None:
        raise Inconclusive("the echo service returned nothing to retransmit")
    return s, seg.seq, time.monotonic()


@pytest.mark.req("SES-043", "SES-044", "SES-048", "SES-040")
def test_unacknowledged_data_is_retransmitted_with_backoff(peer: Peer) -> None:
    s, seq, t0 = _echo_unacked(peer, b"retransmit me")
    times: list[float] = []
    for _ in range(2):
        again = s.reply(12.0, lambda p: p.seq == seq and s.is_data(p))
        assert again is not None, (
            f"the echoed segment was not retransmitted within 12 s (retransmissions so far: {len(times)})"
        )
        times.append(time.monotonic() - t0)
    first, second = times[0], times[1] - times[0]
    scale = peer.target.scale
    assert 0.15 <= first <= 3.0 * scale, (
        f"first retransmission after {first:.3f} s; RTO is 200 ms .. 1 s here (SES-044)"
    )
    assert 1.4 <= second / first <= 3.0, (
        f"second RTO {second:.3f} s is not about double the first {first:.3f} s (SES-048)"
    )
    s.ack()


@pytest.mark.req("SES-082", "SES-083", "SES-081")
def test_zero_window_stops_the_sender(peer: Peer) -> None:
    if peer.target.profile is not Profile.DRAFT:
        raise NotApplicable("go-interop reads window 0 as 'no limit' (erratum E-SES-3)")
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    s.window = 0  # every segment we send from here advertises a zero window
    s.send(b"Z" * 200)
    big = s.reply(1.5, lambda p: len(p.payload) > 1)
    assert big is None, f"the target sent {len(big.payload) if big else 0} bytes into a zero window"
    s.window = 64
    got = s.read(200, 6.0)
    assert got == b"Z" * 200 or b"Z" * 200 in bytes(s.received), "the data did not flow once the window opened"


@pytest.mark.conformance_long
@pytest.mark.req("SES-110")
def test_idle_connection_sends_keepalive(peer: Peer) -> None:
    """Draft 8.12: an idle connection sends an empty-ACK probe every 30 s.  Judged within 25..50 s: a sender that
    checks idleness on a coarse tick (GoB: every 15 s) sends its first probe 30 to 45 s after the last segment."""
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    s.send(b"k")
    assert s.read(1) == b"k"
    t0 = time.monotonic()
    probe = s.reply(50.0, lambda p: not p.payload and not p.flags & 0xD)  # a pure ACK: no SYN, FIN or RST
    took = time.monotonic() - t0
    assert probe is not None, "no keepalive probe within 50 s of idleness"
    assert 25.0 <= took <= 50.0 * peer.target.scale, f"keepalive after {took:.1f} s of idleness (draft: 30 s)"

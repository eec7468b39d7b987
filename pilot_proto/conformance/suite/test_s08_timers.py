"""Draft 8.5.1, 8.8: retransmission, RTO backoff and zero-window persist, observed with tolerances.

The target's timers are seconds and cannot be changed from here: each test withholds ACKs (or the
window) and times what the target does.  Bounds are wide (x --timeout-scale) so only a clearly wrong
timer fails."""

from __future__ import annotations

import time

import pytest

from pilot_proto.conformance.harness import ACK, FIN, MASK32, RST, SYN, Peer, Stream
from pilot_proto.conformance.verdicts import Inconclusive, NotApplicable, Unsupported
from pilot_proto.profile import Profile
from pilot_proto.wire.header import Packet

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
    big = s.reply(1.0, lambda p: len(p.payload) > 1)
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


#: Ports where the target's application takes stream data without answering: 1001 (data exchange: fewer than the
#: 8 bytes of a frame header get no reply) and 9 (a discard service, where one runs).
SINKS = (1001, 9)


def _sink(peer: Peer) -> Stream:
    peer.keyed()
    for port in SINKS:
        s = peer.stream(port)
        try:
            s.connect()
        except Unsupported:
            continue
        return s
    raise Unsupported(f"no port that takes data without answering listens ({', '.join(map(str, SINKS))})")


def _pure_ack_for(s: Stream, end: int, duration: float) -> tuple[Packet | None, float]:
    t0 = time.monotonic()
    p = s.reply(duration, lambda p: not p.payload and p.flags & 0xF == ACK and p.ack == end)
    return p, time.monotonic() - t0


@pytest.mark.req("SES-100")
def test_acks_are_delayed_for_one_segment_and_prompt_for_two(peer: Peer) -> None:
    """A lone segment is acknowledged after a delay (40 ms), two segments at once.  Three connections to a port
    that never answers with data (so nothing piggybacks); one prompt ACK of a lone segment, or no prompt ACK of
    two in any trial, fails."""
    lone: list[float] = []
    pair: list[float] = []
    for _ in range(3):
        s = _sink(peer)
        s.send(b"a")
        ack, took = _pure_ack_for(s, s.snd_nxt, 1.0)
        assert ack is not None, "a lone segment was not acknowledged within 1 s"
        lone.append(took)
        first_end = (s.snd_nxt + 1) & MASK32
        s.send(b"b")
        s.send(b"c")
        ack, took = _pure_ack_for(s, s.snd_nxt, 1.0)
        assert ack is not None, "two segments were not acknowledged within 1 s"
        pair.append(took)
        partial = [
            i.packet for i in peer.inbound if i.packet is not None and s.mine(i.packet) and i.packet.ack == first_end
        ]
        assert not partial, "each of two back-to-back segments was acknowledged on its own"
        s.send(b"", RST)
    assert min(lone) >= 0.015, f"a lone segment was acknowledged after {min(lone) * 1000:.1f} ms: not delayed"
    assert max(lone) <= 0.3 * peer.target.scale, f"a lone segment waited {max(lone):.3f} s for its ACK (draft: 40 ms)"
    assert min(pair) < 0.03, (
        f"two segments were acknowledged only after {min(pair) * 1000:.0f} ms at best: the ACK waited for the timer"
    )


@pytest.mark.conformance_long
@pytest.mark.req("SES-046")
def test_retransmission_gives_up_after_8_attempts(peer: Peer) -> None:
    """With nothing ever acknowledged, the echo's segment is retransmitted at most 8 times (about 33 s of
    backoff from the 200 ms floor to the 10 s cap), then the connection is closed."""
    s, seq, _t0 = _echo_unacked(peer, b"give up")
    retransmits = 0
    ended: Packet | None = None
    while retransmits <= 12:
        p = s.reply(13.0, lambda p: (p.seq == seq and s.is_data(p)) or bool(p.flags & RST))
        if p is None:
            break
        if p.flags & RST:
            ended = p
            break
        retransmits += 1
    assert retransmits <= 8, f"the segment was retransmitted {retransmits} times (draft: at most 8)"
    assert retransmits >= 1, "the segment was never retransmitted"
    s.send(b"still there?")
    echoed = s.reply(2.0, s.is_data)
    assert echoed is None, (
        f"after {retransmits} retransmissions{' and an RST' if ended else ''} the connection still carries data: "
        f"{echoed.describe() if echoed else ''}"
    )


@pytest.mark.conformance_long
@pytest.mark.req("SES-111", "SES-006", "SES-007", "SES-021", "SES-120")
def test_idle_close_then_time_wait_holds_the_tuple_ten_seconds(peer: Peer) -> None:
    """An idle connection is closed after 120 s: the target sends FIN (it is the closer).  We acknowledge it
    3 s late; from that ACK (FIN_WAIT -> TIME_WAIT) the 4-tuple stays occupied -- a SYN reusing it does not
    open a connection -- for 10 s, then a SYN on it opens a new one (TIME_WAIT -> CLOSED)."""
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    s.send(b"i")
    assert s.read(1) == b"i"
    t0 = time.monotonic()
    fin = s.reply(160.0, lambda p: bool(p.flags & (FIN | RST)))  # keepalive probes (pure ACKs) pass by
    idle = time.monotonic() - t0
    assert fin is not None, "an idle connection was not closed within 160 s (draft: 120 s)"
    assert 110.0 <= idle <= 150.0 * peer.target.scale, f"the idle connection was closed after {idle:.0f} s (120 s)"
    assert fin.flags & FIN, f"the idle close was an RST, not the closer's FIN (draft 8.1 Close): {fin.describe()}"
    time.sleep(3.0)
    s.absorb(fin)
    s.ack()
    acked = time.monotonic()

    def syn_answer(isn: int) -> Packet | None:
        s2 = peer.stream(ECHO, src_port=s.src_port, isn=isn)
        s2.syn()
        return s2.reply(0.8, lambda p: bool(p.flags & SYN) and p.ack == (isn + 1) & MASK32)

    held = syn_answer((s.isn + 0x20000000) & MASK32)
    assert held is None, f"{time.monotonic() - acked:.1f} s into TIME_WAIT a SYN reusing the tuple opened a connection"
    released = None
    while time.monotonic() - acked < 16.0 * peer.target.scale:
        time.sleep(max(0.0, 9.0 - (time.monotonic() - acked)) or 0.2)
        isn = peer.rng.getrandbits(32)
        if syn_answer(isn) is not None:
            released = time.monotonic() - acked
            break
    assert released is not None, "16 s after we acknowledged the target's FIN its 4-tuple was still occupied"
    assert released >= 8.8, f"the tuple was free again {released:.1f} s after our ACK of the FIN (TIME_WAIT: 10 s)"
    assert released <= 13.0 * peer.target.scale, f"TIME_WAIT held the tuple {released:.1f} s (draft: 10 s)"

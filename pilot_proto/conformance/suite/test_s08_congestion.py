"""Draft 8.6, 8.7: SACK limits and use, congestion window, fast retransmit -- observed on the echo's answers.

The harness sends the echo service on port 7 many full segments at once, then plays the receiver of the
echo: it withholds, spaces or forges ACKs and counts what the target puts in flight.  A *round* is the data
the target sends until it falls silent for :data:`QUIET_ROUND` seconds (well below the 200 ms RTO floor,
SES-044) or repeats a segment of the round; counts are in segments of the target's largest segment size.
"""

from __future__ import annotations

import itertools
import time

import pytest

from pilot_proto.conformance.harness import ACK, MASK32, Peer, Stream
from pilot_proto.conformance.verdicts import Inconclusive
from pilot_proto.profile import Profile
from pilot_proto.wire.header import Packet

ECHO = 7
MSS = 4096  # the draft's default MSS (SES-078)
QUIET_ROUND = 0.1  # seconds of silence that end a round (x --timeout-scale)


def _pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def _sack(blocks: list[tuple[int, int]], count: int | None = None) -> bytes:
    body = b"".join(left.to_bytes(4, "big") + right.to_bytes(4, "big") for left, right in blocks)
    return b"SACK" + bytes([len(blocks) if count is None else count]) + body


def _loaded_echo(peer: Peer, segments: int) -> Stream:
    """A connection to the echo with ``segments`` full segments of ours on their way to it (paced in tens)."""
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    data = _pattern(segments * MSS)
    for n, off in enumerate(range(0, len(data), MSS)):
        s.send(data[off : off + MSS])
        if n % 10 == 9:
            time.sleep(0.002)  # let a target with a small socket buffer drain
    return s


def _round(s: Stream, quiet: float = QUIET_ROUND, limit: float = 3.0) -> list[Packet]:
    """The target's data segments until ``quiet`` seconds pass without one, or one repeats (see module doc)."""
    got: list[Packet] = []
    seen: set[int] = set()
    deadline = time.monotonic() + s.peer.wait(limit)
    while time.monotonic() < deadline:
        p = s.reply(quiet, s.is_data)
        if p is None:
            break
        if p.seq in seen:  # a retransmission inside the round: the RTO fired, so the round is over
            break
        seen.add(p.seq)
        got.append(p)
    return got


def _segments(burst: list[Packet]) -> int:
    """Size of a round in full segments (a short last segment counts as one)."""
    total = sum(len(p.payload) for p in burst)
    return -(-total // MSS)


def _end(p: Packet) -> int:
    return (p.seq + len(p.payload)) & MASK32


def _first_flight(peer: Peer, segments: int = 64) -> tuple[Stream, list[Packet]]:
    s = _loaded_echo(peer, segments)
    first = _round(s)
    if not first:
        raise Inconclusive("the echo returned nothing to count")
    return s, first


def _ack_each(s: Stream, burst: list[Packet]) -> None:
    """One ACK per segment of ``burst``, in order (each acknowledges one more segment)."""
    for p in sorted(burst, key=lambda p: (p.seq - burst[0].seq) & MASK32):
        s.ack(ack=_end(p))


@pytest.mark.req("SES-070", "SES-078")
def test_initial_window_is_ten_full_segments(peer: Peer) -> None:
    """With 64 segments queued at the echo and no ACK from us, the target's first flight is 10 segments
    (RFC 6928, 40 KB) of 4096 bytes each, the default MSS."""
    s, first = _first_flight(peer)
    sizes = sorted({len(p.payload) for p in first})
    assert max(sizes) == MSS, f"the largest segment is {max(sizes)} bytes with more queued; the default MSS is 4096"
    flight = sum(len(p.payload) for p in first)
    assert 9 * MSS < flight <= 10 * MSS, (
        f"the first flight holds {flight} bytes ({len(first)} segments); an initial window of 10 segments is "
        f"{10 * MSS} bytes"
    )
    s.ack(ack=max((_end(p) for p in first), key=lambda e: (e - first[0].seq) & MASK32))


@pytest.mark.req("SES-071")
def test_slow_start_adds_one_segment_per_ack(peer: Peer) -> None:
    """Each of our ten ACKs (one per segment of the first flight) grows cwnd by one segment: 20 come next."""
    s, first = _first_flight(peer)
    n = _segments(first)
    _ack_each(s, first)
    second = _round(s)
    m = _segments(second)
    assert 2 * n - 1 <= m <= 2 * n, (
        f"after {n} ACKs for a flight of {n} segments the target sent {m} segments (slow start: {2 * n})"
    )


@pytest.mark.req("SES-075", "SES-076", "SES-072", "SES-071")
def test_rto_halves_ssthresh_and_restarts_from_one_segment(peer: Peer, profile: Profile) -> None:
    """Lose a whole flight of 20 segments: after the RTO, cwnd is 1 segment (draft; Go: 10, E-SES-5) and
    ssthresh 10 (half the flight): rounds of 1, 2, 4, 8, then 10 where slow start ends, then about one more
    segment per round (congestion avoidance)."""
    s, first = _first_flight(peer, 80)
    _ack_each(s, first)
    lost = _round(s)
    w = _segments(lost)
    if w < 16:
        raise Inconclusive(f"the second flight held only {w} segments; too few to halve visibly")
    rounds: list[int] = []
    for _ in range(7):
        burst = _round(s, limit=12.0) if rounds else _rto_round(s, lost)
        if not burst:
            break
        rounds.append(_segments(burst))
        _ack_each(s, burst)
    assert len(rounds) >= 5, f"the recovery stalled after rounds {rounds}"
    if profile is Profile.DRAFT:
        assert rounds[0] == 1, f"after the RTO the target sent {rounds[0]} segments at once; draft: cwnd = 1 (Tahoe)"
    # where doubling stops: the first round smaller than twice the one before, less one segment of slack
    k = next((i for i in range(1, len(rounds)) if rounds[i] < 2 * rounds[i - 1] - 1), None)
    assert k is not None, f"the rounds after the RTO never stopped doubling: {rounds}"
    half = w // 2
    assert half - 1 <= rounds[k] <= half + 1, (
        f"slow start ended at {rounds[k]} segments (rounds {rounds}); ssthresh = max(cwnd/2, 2) = {half} "
        f"for a flight of {w}"
    )
    after = rounds[k:]
    steps = [b - a for a, b in itertools.pairwise(after)]
    assert steps, f"no round after slow start ended to judge congestion avoidance: {rounds}"
    assert all(0 <= d <= 2 for d in steps) and sum(steps) >= 1, (
        f"above ssthresh the rounds {after} do not grow by about one segment per round"
    )


def _rto_round(s: Stream, lost: list[Packet]) -> list[Packet]:
    """Wait (no ACK) for the retransmission of the first lost segment, then collect the rest of that round."""
    head = min(lost, key=lambda p: (p.seq - lost[0].seq) & MASK32)
    again = s.reply(12.0, lambda p: s.is_data(p) and p.seq == head.seq)
    if again is None:
        raise Inconclusive("the target never retransmitted the lost flight")
    return [again, *_round(s)]


def _second_flight_head(s: Stream, first: list[Packet]) -> tuple[Packet, float]:
    """Acknowledge the first flight and return the first segment of the next one (with its arrival time) once a
    second one is behind it in flight."""
    s.ack(ack=max((_end(p) for p in first), key=lambda e: (e - first[0].seq) & MASK32))
    head = s.reply(2.0, s.is_data)
    arrived = time.monotonic()
    if head is None or s.reply(0.5, lambda p: s.is_data(p) and p.seq != head.seq) is None:
        raise Inconclusive("no second flight of two segments or more to lose one from")
    return head, arrived


@pytest.mark.req("SES-073")
def test_three_duplicate_acks_trigger_fast_retransmit(peer: Peer) -> None:
    """Three duplicate pure ACKs for a segment bring its retransmission at once: within 150 ms of its first
    transmission, where no RTO can have fired yet (the RTO is at least 200 ms, SES-044)."""
    s, first = _first_flight(peer)
    head, arrived = _second_flight_head(s, first)
    for _ in range(3):
        s.ack(ack=head.seq)  # the same cumulative ACK again: no data, same window
    again = s.reply(2.0, lambda p: s.is_data(p) and p.seq == head.seq)
    took = time.monotonic() - arrived
    assert again is not None, f"three duplicate ACKs for seq {head.seq} brought no retransmission within 2 s"
    assert took < 0.15, (
        f"the retransmission came {took:.3f} s after the segment's first transmission: the RTO's doing, not a "
        "fast retransmit on three duplicate ACKs"
    )


@pytest.mark.req("SES-074")
def test_acks_carrying_data_are_not_duplicates(peer: Peer) -> None:
    """Three ACKs that repeat the cumulative ACK but carry data are not duplicate ACKs (RFC 5681 3.2): the
    segment is not retransmitted before its RTO could fire (200 ms after its first transmission)."""
    s, first = _first_flight(peer)
    head, arrived = _second_flight_head(s, first)
    for b in (b"d", b"a", b"t"):
        s.send(b, ack=head.seq)
    left = arrived + 0.19 - time.monotonic()
    early = s.reply(left / peer.target.scale, lambda p: s.is_data(p) and p.seq == head.seq) if left > 0 else None
    assert early is None, "three data-carrying ACKs were counted as duplicates: the segment was fast-retransmitted"


@pytest.mark.req("SES-063")
def test_sacked_segments_are_not_retransmitted(peer: Peer) -> None:
    """We lose the second segment of the first flight and SACK all the others: the target retransmits the
    missing segment and none of the ones we hold."""
    s, first = _first_flight(peer)
    if len(first) < 4:
        raise Inconclusive(f"a first flight of {len(first)} segments is too short")
    order = sorted(first, key=lambda p: (p.seq - first[0].seq) & MASK32)
    missing, held = order[1], order[2:]
    blocks = [(held[0].seq, _end(held[-1]))]
    s.ack(ack=missing.seq, payload=_sack(blocks))  # acknowledges the first segment, SACKs the rest
    s.ack(ack=missing.seq, payload=_sack(blocks))
    s.ack(ack=missing.seq, payload=_sack(blocks))
    held_seqs = {p.seq for p in held}
    again = s.reply(8.0, lambda p: s.is_data(p) and (p.seq == missing.seq or p.seq in held_seqs))
    assert again is not None, f"the missing segment (seq {missing.seq}) was never retransmitted"
    assert again.seq == missing.seq, f"the target retransmitted a segment we SACKed ({again.seq}) first"
    resent = s.reply(0.5, lambda p: s.is_data(p) and p.seq in held_seqs)
    assert resent is None, f"the target retransmitted a SACKed segment: seq {resent.seq if resent else ''}"


@pytest.mark.req("SES-065")
def test_bogus_sack_blocks_are_ignored(peer: Peer, profile: Profile) -> None:
    """SACK blocks beyond what the target sent, reversed, or with a wrong count claim nothing: the segments
    they name are still retransmitted, and the echo completes intact.  (Under the draft reading such a payload
    is data, E-SACK-1, so there it is sent as data; either way it must not mark anything as held.)"""
    s, first = _first_flight(peer, 20)
    order = sorted(first, key=lambda p: (p.seq - first[0].seq) & MASK32)
    start, top = order[0].seq, _end(order[-1])
    bogus = [
        _sack([(start, (top + 100_000) & MASK32)]),  # covers the whole flight but runs past snd_nxt
        _sack([(top, start)]),  # reversed
        _sack([(start, top)], count=3),  # count byte says 3 blocks, one follows
        _sack([((start - 50_000) & MASK32, start)]),  # wholly below snd_una
    ]
    for payload in bogus:
        if profile is Profile.DRAFT:  # E-SACK-1: a SACK-looking payload naming bytes never sent is data
            s.send(payload, ack=start)
        else:  # Go parses it as SACK blocks (bogus ones then claim nothing)
            s.ack(ack=start, payload=payload)
    again = s.reply(8.0, lambda p: s.is_data(p) and p.seq == start)
    assert again is not None, "after bogus SACK blocks claiming it, the first segment was never retransmitted"
    for p in order:
        s.absorb(p)
    s.ack()
    rest = s.read(20 * MSS - len(s.received), 10.0)
    assert len(s.received) == 20 * MSS and bytes(s.received) == _pattern(20 * MSS), (
        f"the echo did not complete intact after bogus SACK blocks ({len(s.received)} of {20 * MSS} bytes, "
        f"{len(rest)} after the retransmission)"
    )


@pytest.mark.req("SES-062", "SES-061")
def test_at_most_four_sack_blocks(peer: Peer) -> None:
    """Six separate ranges held out of order: no ACK of the target carries more than 4 SACK blocks."""
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    base = s.snd_nxt
    data = _pattern(130)
    for off in (20, 40, 60, 80, 100, 120):  # holes at 0-20, 30-40, 50-60, ... each range 10 bytes
        s.send(data[off : off + 10], seq=(base + off) & MASK32)
    acks: list[Packet] = []
    for _ in range(6):  # each out-of-order segment is answered at once with an ACK carrying SACK (SES-101)
        p = s.reply(0.5, lambda p: s.sack_blocks(p) is not None)
        if p is None:
            break
        acks.append(p)
    assert acks, "no SACK for six out-of-order segments"
    counts = [len(s.sack_blocks(p) or []) for p in acks]
    assert max(counts) <= 4, f"an ACK carried {max(counts)} SACK blocks (draft: at most 4)"
    assert max(counts) >= 2, f"with six ranges held the target reported at most {max(counts)} block(s)"
    for off in (0, 30, 50, 70, 90, 110):
        s.send(data[off : off + (20 if off == 0 else 10)], seq=(base + off) & MASK32)
    s.snd_nxt = (base + 130) & MASK32
    assert s.read(130) == data, "the echo did not return the data once the holes were filled"


@pytest.mark.req("SES-102")
def test_sending_data_cancels_the_delayed_ack(peer: Peer) -> None:
    """The echo's answer carries the ACK for our segment; no separate delayed ACK for it follows."""
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    for _ in range(2):
        s.send(b"piggyback")
        end = s.snd_nxt
        data = s.reply(2.0, s.is_data)
        assert data is not None, "the echo did not answer"
        assert data.ack == end, f"the echo's data acknowledges {data.ack}, not our segment's end {end}"

        def redundant(p: Packet, end: int = end) -> bool:
            return not p.payload and p.flags & 0xF == ACK and p.ack == end

        extra = s.reply(0.15, redundant)
        assert extra is None, (
            f"a separate ACK for data the echo's answer already acknowledged: {extra.describe() if extra else ''}"
        )
        s.absorb(data)
        s.ack()

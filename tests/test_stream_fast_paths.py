"""The stream's speed-ups agree with the plain rules they shortcut (draft 8.5, 8.6).

Each test drives the real code with random input and checks it against a small model of the rule:
the SACK runs a receiver reports, which segments a sender counts as SACKed, and in-order delivery;
plus the sender's recovery counters that the loss benchmark reports.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_helpers import ACK, accepted, dialed

from pilot_proto.stream import StreamConfig
from pilot_proto.stream.events import DataReceived
from pilot_proto.stream.reassembly import Reassembly
from pilot_proto.testing.link import LinkConfig
from pilot_proto.testing.pair import ADDR_A, ADDR_B, StreamPair
from pilot_proto.wire.sack import encode_sack

pieces_st = st.lists(st.tuples(st.integers(0, 300), st.integers(1, 40)), max_size=40)


def _runs(held: set[int]) -> list[tuple[int, int]]:
    """Maximal runs of consecutive positions, lowest first."""
    out: list[tuple[int, int]] = []
    for p in sorted(held):
        if out and out[-1][1] == p:
            out[-1] = (out[-1][0], p + 1)
        else:
            out.append((p, p + 1))
    return out


@pytest.mark.req("SES-060", "SES-062")
@settings(max_examples=300, derandomize=True, deadline=None)
@given(pieces_st, st.integers(1, 6))
def test_reassembly_runs_match_the_bytes_held(pieces: list[tuple[int, int]], limit: int) -> None:
    stream = bytes(i % 251 for i in range(400))
    rx = Reassembly(0)
    held: set[int] = set()
    delivered = bytearray()
    for start, n in pieces:
        delivered += rx.add(start, stream[start : start + n])
        held |= set(range(start, min(start + n, len(stream))))
        held = {p for p in held if p >= rx.rcv_nxt}
        assert rx.blocks(10_000) == _runs(held)
        assert rx.blocks(limit) == _runs(held)[:limit]
        assert rx.ooo_bytes == len(held)
    assert bytes(delivered) == stream[: rx.rcv_nxt]


@pytest.mark.req("SES-063", "SES-065")
@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(1, 1000), st.integers(1, 400)), min_size=1, max_size=4), max_size=6))
def test_a_segment_is_sacked_when_one_block_covers_it(acks: list[list[tuple[int, int]]]) -> None:
    """Blocks may come in any order and overlap; a segment counts only when a single block holds it whole.

    Every block lies inside the sent range, so the payload is SACK (E-SACK-1), never data.
    """
    ep, peer, cid = dialed(StreamConfig.for_profile(mss=100), our_isn=0, isn=0)
    ep.send(cid, bytes(1000), 0.0)
    assert len(ep.packets_to_send()) == 10
    conn = ep.connection(cid)
    sacked: set[int] = set()
    for i, raw in enumerate(acks):
        blocks = [(left, min(left + span, 1001)) for left, span in raw]
        peer.feed(peer.packet(ACK, ack=1, payload=encode_sack(blocks)), now=0.001 * (i + 1))
        sacked |= {s for s in range(1, 1001, 100) if any(ls <= s and s + 100 <= rs for ls, rs in blocks)}
        # SACKed segments leave the flight; segments marked lost (recovery) leave it too, until resent
        assert conn.rec.sacked_bytes == 100 * len(sacked)
        assert conn.bytes_in_flight <= 1000 - 100 * len(sacked)
    peer.feed(peer.packet(ACK, ack=1001), now=1.0)
    assert conn.bytes_in_flight == 0 and conn.send_buffer_size == 0


@pytest.mark.req("SES-040", "SES-051")
@settings(max_examples=100, derandomize=True, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=12), st.integers(1, 4))
def test_in_order_data_delivered_and_acked_like_the_general_path(sizes: list[int], window: int) -> None:
    """In-order segments (the fast path) up to the advertised window; the rest is refused and re-ACKed."""
    cfg = StreamConfig.for_profile(mss=100, recv_buf_segments=window)
    ep, peer, cid = accepted(cfg, our_isn=0, isn=0)
    pos, accepted_bytes = 1, 0
    for n in sizes:
        out = peer.feed(peer.packet(ACK, seq=pos, ack=1, payload=bytes(n)))
        room = window * 100 - accepted_bytes
        took = min(n, room)
        accepted_bytes += took
        if took:
            pos += took
        got = sum(len(e.data) for e in peer.events if isinstance(e, DataReceived))
        assert got == accepted_bytes
        if out:
            assert out[-1].ack == pos
        peer.events.clear()
        # the application has read everything: the window reopens
        accepted_bytes = 0
    assert ep.connection(cid).rcv_nxt == pos


@pytest.mark.req("SES-063", "SES-073")
def test_recovery_counters_match_what_the_link_lost() -> None:
    """Every data segment the link drops is sent again; under light loss SACK recovery does it, not timeouts."""
    cfg = StreamConfig.for_profile("draft", mss=1000, nodelay=True)
    pair = StreamPair(cfg, link=LinkConfig(delay=0.001), seed=5, keep_events=False)
    ca, cb = pair.connect()
    pair.link.configure(LinkConfig(delay=0.001, loss=0.02))
    data = bytes(range(256)) * 2000
    pair.send("a", ca, data)
    got = pair.sides["b"]
    assert pair.run_until(lambda: len(got.received.get(cb, b"")) >= len(data), max_time=600.0)
    assert got.data(cb) == data
    sender = pair.a.connection(ca)
    data_lost = pair.link.direction_stats(ADDR_A, ADDR_B).lost
    assert data_lost > 0
    assert sender.retransmits >= data_lost
    assert sender.fast_recoveries > 0 and sender.rto_count <= sender.fast_recoveries

"""Draft 8.1-8.4, 6.4: handshake, teardown, RST.  Driven by hand against the echo service on port 7
(a target without one is ``unsupported`` for these tests) and against a port nothing listens on."""

from __future__ import annotations

import time

import pytest

from pilot_proto.conformance.harness import ACK, FIN, MASK32, RST, SYN, Peer, Stream
from pilot_proto.conformance.suite._common import QUIET
from pilot_proto.conformance.verdicts import NotApplicable
from pilot_proto.profile import Profile

ECHO = 7
CLOSED = 4093  # a registered-range port no reference service uses


def _closed_port_syn(peer: Peer) -> tuple[Stream, object]:
    peer.keyed()
    s = peer.stream(CLOSED)
    s.syn()
    return s, s.reply(2.0)


@pytest.mark.req("SES-010", "SES-011", "SES-012", "SES-013", "SES-004", "SES-003")
def test_three_way_handshake(peer: Peer) -> None:
    peer.keyed()
    s = peer.stream(ECHO)
    synack = s.connect()
    assert synack.window > 0, "the SYN-ACK advertises a zero receive window"
    assert not synack.payload, "the SYN-ACK carries payload"
    s.send(b"x")
    assert s.read(1) == b"x", "the connection did not carry data after the handshake"


@pytest.mark.req("SES-131", "SES-001")
def test_syn_to_closed_port_gets_rst(peer: Peer) -> None:
    s, ans = _closed_port_syn(peer)
    assert ans is not None, f"no answer to a SYN for port {CLOSED} (nothing listens there)"
    assert ans.flags & RST, f"expected RST, got {ans.describe()}"  # type: ignore[attr-defined]
    if peer.target.profile is Profile.DRAFT:
        assert ans.ack == s.snd_nxt, f"draft: the RST acknowledges the SYN (ack {s.snd_nxt}), got {ans.ack}"  # type: ignore[attr-defined]


@pytest.mark.req("SES-131")
def test_no_rst_in_answer_to_rst(peer: Peer) -> None:
    peer.keyed()
    s = peer.stream(CLOSED)
    s.send(b"", RST, seq=s.isn)
    assert s.reply(QUIET) is None, "the target answered an RST (to a closed port) with a packet"


@pytest.mark.req("SES-131")
def test_ack_for_unknown_connection_gets_rst(peer: Peer) -> None:
    if peer.target.profile is not Profile.DRAFT:
        raise NotApplicable("go-interop: Go answers only a SYN to a closed port with RST (erratum E-CONF-2)")
    peer.keyed()
    s = peer.stream(CLOSED)  # no connection and no listener (SES-131); a listening port may stay silent
    s.rcv_nxt = 12345
    s.send(b"stray", ACK, seq=s.isn)
    ans = s.reply(2.0)
    assert ans is not None and ans.flags & RST, "data for a port with no connection or listener got no RST"


@pytest.mark.req("SES-020", "SES-022", "SES-005")
def test_close_is_acknowledged_and_answered(peer: Peer) -> None:
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    s.send(b"bye")
    assert s.read(3) == b"bye"
    fin_seq = s.snd_nxt
    s.send(b"", ACK | FIN)
    got = s.reply(3.0, lambda p: p.ack == (fin_seq + 1) & MASK32 or bool(p.flags & FIN))
    assert got is not None, "our FIN was neither acknowledged nor answered"
    fin = got if got.flags & FIN else s.reply(3.0, lambda p: bool(p.flags & FIN))
    assert fin is not None, "the echo side never sent its own FIN after ours (SES-022)"
    if not fin.flags & FIN or fin.ack != (fin_seq + 1) & MASK32:
        assert got.ack == (fin_seq + 1) & MASK32, f"our FIN (seq {fin_seq}) was acknowledged with {got.ack}"
    s.absorb(fin)
    s.ack()
    assert s.reply(QUIET, s.is_data) is None, "data after the close"


@pytest.mark.req("SES-130", "SES-131")
def test_rst_aborts_the_connection(peer: Peer) -> None:
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    s.send(b"", RST)
    s.send(b"after-reset")  # the connection is gone: this must not be echoed (an RST or silence are both fine)
    ans = s.reply(1.0, s.is_data)
    assert ans is None, f"data on a connection we reset was processed: {ans.describe() if ans else ''}"


@pytest.mark.req("SES-132")
def test_rst_outside_window_is_ignored(peer: Peer) -> None:
    if peer.target.profile is not Profile.DRAFT:
        raise NotApplicable("go-interop: Go accepts any RST for the connection (erratum E-SES-11)")
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    s.send(b"", RST, seq=(s.snd_nxt + 0x40000000) & MASK32)
    s.send(b"still-here")
    assert s.read(10) == b"still-here", "an RST far outside the window aborted the connection"


@pytest.mark.req("SES-052", "SES-050")
def test_duplicate_segment_delivered_once(peer: Peer) -> None:
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    seq = s.snd_nxt
    s.send(b"once")
    s.send(b"once", seq=seq)
    s.snd_nxt = (seq + 4) & MASK32
    s.send(b"!")
    data = s.read(5, 3.0)
    extra = s.read(4, QUIET)
    assert data + extra == b"once!", f"the echo returned {data + extra!r}: duplicate data delivered twice or lost"


@pytest.mark.req("SES-050", "SES-060", "SES-061", "SES-101")
def test_out_of_order_is_buffered_and_sacked(peer: Peer) -> None:
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    first = s.snd_nxt
    s.send(b"B" * 10, seq=(first + 10) & MASK32)  # the second segment first: a hole of 10 bytes
    sack = s.reply(2.0, lambda p: p.ack == first and not p.flags & SYN)
    assert sack is not None, "no immediate ACK for an out-of-order segment (SES-101)"
    blocks = s.sack_blocks(sack)
    assert blocks is not None, f"the ACK for out-of-order data carries no SACK blocks: {sack.describe()}"
    assert ((first + 10) & MASK32, (first + 20) & MASK32) in blocks, f"SACK blocks {blocks} miss the held range"
    s.send(b"A" * 10, seq=first)
    s.snd_nxt = (first + 20) & MASK32
    assert s.read(20) == b"A" * 10 + b"B" * 10, "the echo did not return the data in order once the hole filled"


@pytest.mark.req("SES-051", "SES-133")
def test_data_far_beyond_the_window_is_not_held(peer: Peer) -> None:
    peer.keyed()
    s = peer.stream(ECHO)
    synack = s.connect()
    beyond = (s.snd_nxt + 64 * 1024 * 1024) & MASK32  # 64 MiB ahead: beyond any advertised window
    s.send(b"F" * 10, seq=beyond)
    ans = s.reply(1.0, lambda p: s.sack_blocks(p) is not None)
    assert ans is None, (
        f"the target SACKed data 64 MiB beyond its window ({synack.window} segments): {s.sack_blocks(ans)}"
    )
    s.send(b"ok")
    assert s.read(2) == b"ok", "the connection broke after data beyond the window"


@pytest.mark.req("SES-133")
def test_ack_of_unsent_data_does_not_break_the_connection(peer: Peer) -> None:
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    s.ack(ack=(s.rcv_nxt + 1_000_000) & MASK32)
    s.send(b"still")
    assert s.read(5) == b"still", "an ACK for data never sent broke the connection"


@pytest.mark.req("SES-090", "SES-091")
def test_small_writes_are_coalesced_while_data_is_unacknowledged(peer: Peer) -> None:
    """Nagle: with its first echoed byte unacknowledged, the echo's next small writes wait and leave together."""
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    s.send(b"a")
    first = s.reply(2.0, s.is_data)
    assert first is not None and first.payload == b"a", "the first byte was not echoed"
    s.send(b"b")
    time.sleep(0.015)  # 'b' reaches the echo before 'c' (one read batch would coalesce them without Nagle) but
    s.send(b"c")  # well inside the 40 ms Nagle timer
    segs: list[bytes] = []
    while len(b"".join(segs)) < 2:
        p = s.reply(1.0, lambda p: s.is_data(p) and p.seq != first.seq)
        if p is None:
            break
        segs.append(p.payload)
    assert b"".join(segs)[:2] == b"bc", f"the echo of b, c did not arrive (got {segs})"
    assert len(segs) == 1, f"with data unacknowledged the small writes went out separately: {segs} (SES-090)"

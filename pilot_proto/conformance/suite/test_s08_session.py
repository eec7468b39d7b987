"""Draft 8.1-8.4, 6.4: handshake, teardown, RST.  Driven by hand against the echo service on port 7
(a target without one is ``unsupported`` for these tests) and against a port nothing listens on."""

from __future__ import annotations

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
    ans = s.reply(0.5, s.is_data)
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
    ans = s.reply(0.6, lambda p: s.sack_blocks(p) is not None)
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
    # A moment apart (well inside the 40 ms Nagle timer), so an echo that reads both at once cannot hide a sender
    # that sends each small write at once; a "b" that already came is such a sender's first segment.
    early = s.reply(0.015, lambda p: s.is_data(p) and p.seq != first.seq)
    s.send(b"c")
    segs: list[bytes] = [early.payload] if early is not None else []
    while len(b"".join(segs)) < 2:
        p = s.reply(1.0, lambda p: s.is_data(p) and p.seq != first.seq)
        if p is None:
            break
        segs.append(p.payload)
    assert b"".join(segs)[:2] == b"bc", f"the echo of b, c did not arrive (got {segs})"
    assert len(segs) == 1, f"with data unacknowledged the small writes went out separately: {segs} (SES-090)"


def _pattern(n: int) -> bytes:
    """Bytes whose value tells their offset (mod 251, a prime, so no segment size lines up with it)."""
    return bytes(i % 251 for i in range(n))


@pytest.mark.req("PKT-007", "PKT-008", "PKT-011")
def test_sequence_is_the_byte_offset_and_ack_the_next_byte_expected(peer: Peer) -> None:
    """Every segment of the echo's answer sits at seq = its first byte's offset in the stream (after the SYN's
    one), and the target's ACKs name exactly the next byte it expects from us: never more, and all of it."""
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    assert s.irs is not None
    data = _pattern(10000)
    for off in range(0, len(data), 2500):
        s.send(data[off : off + 2500])
    assert s.read(len(data), 6.0) == data, "the echo did not return the 10000 bytes in order"
    mine = [i.packet for i in peer.inbound if i.packet is not None and s.mine(i.packet)]
    base = (s.irs + 1) & MASK32
    for p in mine:
        if not s.is_data(p):
            continue
        off = (p.seq - base) & MASK32
        assert p.payload == data[off : off + len(p.payload)], (
            f"segment seq {p.seq} (offset {off}) holds bytes from another offset: {p.payload[:4].hex()}..."
        )
    acks = [(p.ack - s.isn - 1) & MASK32 for p in mine if p.flags & ACK and not p.flags & SYN]
    assert acks, "no ACK from the target"
    assert max(acks) == len(data), f"the target's highest ACK is byte {max(acks)} of our {len(data)} (next expected)"
    assert all(a <= len(data) for a in acks), f"an ACK beyond the bytes we sent: {sorted(set(acks))[-3:]}"


@pytest.mark.req("SES-030", "SES-031")
def test_sequence_numbers_wrap_at_2_32(peer: Peer) -> None:
    """Our ISN sits 12 bytes below 2^32: the data crosses the wrap, the piece after it arrives first (held and
    SACKed across the wrap), and the echo returns everything in order."""
    peer.keyed()
    s = peer.stream(ECHO, isn=0xFFFFFFF3)  # first data byte at 2^32 - 12
    s.connect()
    first = s.snd_nxt
    head, tail = b"H" * 20, b"T" * 20  # head spans 2^32 - 12 .. 2^32 + 8, tail lies wholly beyond the wrap
    s.send(tail, seq=(first + 20) & MASK32)
    sack = s.reply(2.0, lambda p: s.sack_blocks(p) is not None)
    assert sack is not None and s.sack_blocks(sack) == [((first + 20) & MASK32, (first + 40) & MASK32)], (
        f"the segment beyond the wrap was not SACKed as [{(first + 20) & MASK32}, {(first + 40) & MASK32}): "
        f"{sack.describe() if sack else 'no SACK'}"
    )
    s.send(head, seq=first)
    s.snd_nxt = (first + 40) & MASK32
    assert s.read(40) == head + tail, "the echo did not return the bytes across the 2^32 wrap in order"
    seen = [i.packet.ack for i in peer.inbound if i.packet is not None and s.mine(i.packet)]
    if (first + 40) & MASK32 not in seen:
        late = s.reply(1.0, lambda p: p.ack == (first + 40) & MASK32)
        seen += [late.ack] if late is not None else []
    assert (first + 40) & MASK32 in seen, (
        f"the target never acknowledged up to {(first + 40) & MASK32} (past the wrap); its ACKs: {seen[-5:]}"
    )


@pytest.mark.req("PKT-009", "SES-081")
def test_window_counts_segments_not_bytes(peer: Peer) -> None:
    """We advertise a window of 1: the target may have one segment (of up to its MSS) in flight, not one byte
    and not several segments."""
    peer.keyed()
    s = peer.stream(ECHO, window=1)
    s.connect()
    s.send(_pattern(3000))
    first = s.reply(3.0, s.is_data)
    assert first is not None, "nothing echoed into a window of one segment"
    s.send(_pattern(6000)[3000:])  # more for the echo to write while its first segment is unacknowledged
    more = s.reply(0.35, lambda p: s.is_data(p) and p.seq != first.seq)
    assert more is None, (
        f"with our window at 1 segment and {len(first.payload)} bytes unacknowledged the target sent another "
        f"segment: {more.describe() if more else ''}"
    )
    assert len(first.payload) > 1, "the window of 1 was read as 1 byte: the segment carries a single byte"
    s.absorb(first)
    got = bytes(s.received) + s.read(6000 - len(s.received), 6.0)
    assert got == _pattern(6000), "the echo did not complete through a window of one segment"


@pytest.mark.req("SES-134", "SES-050")
def test_acknowledged_data_is_always_delivered(peer: Peer) -> None:
    """Whatever the target acknowledged reaches its application: data sent out of order, then the hole filled
    together with our FIN, all comes back from the echo before its own FIN."""
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    base = s.snd_nxt
    data = _pattern(3000)
    s.send(data[2000:], seq=(base + 2000) & MASK32)
    s.send(data[1000:2000], seq=(base + 1000) & MASK32)
    s.send(data[:1000], ACK | FIN, seq=base)  # fills the hole and closes: all 3000 bytes and the FIN at once
    s.snd_nxt = s.max_sent = (base + 3001) & MASK32
    got = s.read(3000, 5.0)
    acks = [(i.packet.ack - base) & MASK32 for i in peer.inbound if i.packet is not None and s.mine(i.packet)]
    top = max((a for a in acks if a <= 3001), default=0)
    assert got == data[: len(got)] and len(got) >= min(top, 3000), (
        f"the target acknowledged {top} bytes (of 3000 and a FIN) but its application returned only {len(got)}"
    )
    assert top >= 3000, f"the target acknowledged only {top} of 3000 bytes once the hole was filled"

"""A misbehaving or hostile peer never crashes or corrupts a connection; impaired links; scale (draft 8.5, 8.8)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stream_helpers import ACK, FIN, LOCAL, RST, SYN, RawPeer, accepted, dialed

from pilot_proto.profile import Profile
from pilot_proto.stream import CloseReason, State, StreamConfig, StreamEndpoint
from pilot_proto.stream.events import StreamEnded
from pilot_proto.stream.sendbuf import SendBuffer
from pilot_proto.testing.link import LinkConfig
from pilot_proto.testing.pair import StreamPair
from pilot_proto.wire import Addr, Packet, PacketProtocol, SocketAddr

PROFILES = [Profile.DRAFT, Profile.GO_INTEROP]


@pytest.mark.req("SES-093", "SES-134")
@settings(max_examples=150, derandomize=True, deadline=None)
@given(st.lists(st.one_of(st.binary(min_size=1, max_size=40000), st.integers(0, 100)), max_size=40), st.data())
def test_send_buffer_reads_match_a_flat_reference(ops: list[bytes | int], data: st.DataObject) -> None:
    buf = SendBuffer(1)
    flat = bytearray()
    start = 1
    for k, op in enumerate(ops):
        if isinstance(op, bytes):
            if k % 3 == 1:  # a view of immutable bytes (kept, not copied)
                buf.append(memoryview(b"\xff" + op)[1:])
            elif k % 3 == 2:  # a mutable buffer, changed after the write (copied, so the change is not sent)
                mutable = bytearray(op)
                buf.append(mutable)
                mutable[:] = bytes(len(op))
            else:
                buf.append(op)
            flat += op
        else:
            start = min(start + op * 97, 1 + len(flat))
            buf.release(start)
        assert buf.end == 1 + len(flat) and len(buf) == buf.end - buf.start
        if buf.end > start:
            pos = data.draw(st.integers(start, buf.end - 1))
            n = data.draw(st.integers(1, buf.end - pos))
            got = buf.read(pos, n)
            assert type(got) is bytes and got == bytes(flat[pos - 1 : pos - 1 + n])


@pytest.mark.req("SES-133")
def test_ack_of_unsent_data_is_ignored_and_answered() -> None:
    ep, peer, cid = dialed(our_isn=0, isn=0)
    ep.send(cid, b"abc", 0.0)
    ep.packets_to_send()
    conn = ep.connection(cid)
    (ack,) = peer.feed(peer.packet(ACK, ack=5000, payload=b"xyz"))
    assert conn.snd_una == 1 and conn.rcv_nxt == 1 and ack.ack == 1  # whole packet dropped, we re-ACK
    assert conn.bytes_in_flight == 3


@pytest.mark.req("SES-133", "SES-051")
def test_data_far_beyond_window_and_wrapped_sequence_numbers() -> None:
    ep, peer, cid = accepted(our_isn=0, isn=0)
    conn = ep.connection(cid)
    for seq in (1 + (1 << 31), 0xFFFFFF00, 1 + 600 * 4096):
        peer.feed(peer.packet(ACK, seq=seq, ack=1, payload=b"junk"))
    assert conn.rcv_nxt == 1 and conn.ooo_bytes == 0
    assert conn.state is State.ESTABLISHED


@pytest.mark.req("SES-132", "SES-133")
@pytest.mark.parametrize("seq", [0, 0xFFFFFFFF, 1 << 31, 1 + (1 << 22)])
def test_rst_with_weird_sequence_is_ignored_under_draft(seq: int) -> None:
    ep, peer, cid = accepted(our_isn=0, isn=0)
    peer.feed(peer.packet(RST, seq=seq))
    assert ep.connection(cid).state is State.ESTABLISHED


@pytest.mark.req("SES-133", "SES-134")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.value)
@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFFFFFF),
                          st.integers(0, 0xFFFF), st.binary(max_size=64)), max_size=25))  # fmt: skip
@example(packets=[(0, 0, 0, 0, b""), (0, 0, 0, 0, b""), (4, 0, 0, 0, b"\x00")])  # deep profile: FIN at rcv_nxt
def test_random_packets_never_crash_or_break_invariants(
    profile: Profile, packets: list[tuple[int, int, int, int, bytes]]
) -> None:
    ep, peer, cid = accepted(StreamConfig.for_profile(profile, mss=100, recv_buf_segments=8), our_isn=0, isn=0)
    ep.send(cid, bytes(500), 0.0)
    conn = ep.connection(cid)
    t = 0.0
    for flags, seq, ack, window, payload in packets:
        t += 0.05
        near = bool(flags & 1)  # half of the packets use plausible numbers
        pkt = peer.packet(flags, seq=(1 + seq % 1000) if near else seq, ack=(1 + ack % 600) if near else ack,
                          window=window, payload=payload)  # fmt: skip
        peer.feed(pkt, now=t)
        peer.advance(t)
        if conn.state is State.CLOSED:
            break
        assert 0 <= conn.bytes_in_flight <= conn.snd_nxt - conn.snd_una + 1
        assert conn.snd_una <= conn.snd_nxt
        assert 0 <= conn.recv_unread + conn.ooo_bytes <= 8 * 100
        assert 0 < conn.cwnd <= 1 << 20 and conn.ssthresh > 0
    delivered = b"".join(e.data for e in peer.events if hasattr(e, "data"))
    fin = sum(isinstance(e, StreamEnded) for e in peer.events)  # an accepted FIN takes one sequence number
    assert len(delivered) == (conn.rcv_nxt - 1 - fin if conn.state is not State.CLOSED else len(delivered))


@pytest.mark.req("SES-040", "SES-050", "SES-052", "SES-134", "SES-020")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.value)
@pytest.mark.parametrize("link", [
    LinkConfig(delay=0.01, jitter=0.008, reorder=0.2),
    LinkConfig(delay=0.01, duplicate=0.2),
    LinkConfig(delay=0.01, loss=0.1, reorder=0.1, duplicate=0.05),
    LinkConfig(delay=0.01, corrupt=0.05, loss=0.02),
], ids=["reorder", "duplicate", "lossy", "corrupt"])  # fmt: skip
def test_bidirectional_transfer_and_close_over_impaired_links(profile: Profile, link: LinkConfig) -> None:
    cfg = StreamConfig.for_profile(profile, mss=1024)
    pair = StreamPair(cfg, link=link, seed=7, wire=link.corrupt > 0)
    ca, cb = pair.connect()
    up = bytes(i * 31 % 256 for i in range(150_000))
    down = bytes(i * 17 % 256 for i in range(90_000))
    pair.send("a", ca, up)
    pair.send("b", cb, down)
    sa, sb = pair.sides["a"], pair.sides["b"]
    assert pair.run_until(lambda: len(sb.data(cb)) == len(up) and len(sa.data(ca)) == len(down), max_time=300)
    pair.close("a", ca)
    assert pair.run_until(lambda: ca in sa.closed and cb in sb.closed, max_time=300)
    assert sb.data(cb) == up and sa.data(ca) == down
    assert sa.closed[ca].reason is CloseReason.NORMAL and sb.closed[cb].reason is CloseReason.NORMAL
    assert ca in sa.ended and cb in sb.ended


@pytest.mark.req("SES-121", "SES-001")
def test_ten_thousand_connections_demux_by_dict() -> None:
    ep = StreamEndpoint(
        LOCAL,
        StreamConfig.for_profile(
            max_connections=20_000,
            max_connections_per_port=20_000,
            max_connections_per_peer=20_000,
            syn_rate_per_source=None,
            syn_rate_global=None,
        ),
    )
    ep.listen(1000)
    for i in range(10_000):
        peer = RawPeer(ep, port=1 + i % 60000, isn=i)
        peer.feed(peer.packet(SYN)._replace(src=Addr(1, 100 + i // 60000)))
    assert ep.active_count == 10_000
    assert len(ep._conns) == 10_000
    p = RawPeer(ep, port=1 + 4321, isn=4321)
    p.feed(p.packet(ACK, seq=4322, ack=1)._replace(src=Addr(1, 100)))
    p.feed(p.packet(ACK, seq=4322, ack=1, payload=b"hi")._replace(src=Addr(1, 100)))
    conn = ep.find(SocketAddr(Addr(1, 100), 4322), 1000)
    assert conn is not None and conn.state is State.ESTABLISHED and conn.rcv_nxt == 3
    assert ep.get_timer() is not None and len(ep._heap) <= 3 * 10_000
    for c in list(ep.connections())[:100]:
        ep.abort(c.id, 1.0)
    assert ep.active_count == 9_900


@pytest.mark.req("SES-133")
def test_fin_out_of_order_waits_for_the_data_before_it() -> None:
    ep, peer, cid = accepted(our_isn=0, isn=0)
    peer.feed(peer.packet(FIN | ACK, seq=6, ack=1))  # FIN after 5 bytes we have not seen
    conn = ep.connection(cid)
    assert conn.state is State.ESTABLISHED
    peer.feed(peer.packet(ACK, seq=1, ack=1, payload=b"12345"))
    assert conn.rcv_nxt == 7 and conn.state in (State.CLOSE_WAIT, State.LAST_ACK)


@pytest.mark.req("SES-073", "SES-076", "SES-133")
def test_every_tracer_record_fits_the_trace_schema() -> None:
    from pilot_proto.trace import validate_record

    records: list[dict[str, object]] = []
    pair = StreamPair(StreamConfig.for_profile(mss=1024), link=LinkConfig(delay=0.01, loss=0.05), seed=2,
                      tracer=records.append)  # fmt: skip
    ca, cb = pair.connect()
    pair.send("a", ca, bytes(200_000))
    pair.a.receive_packet(_stray(), pair.now)  # an empty datagram: an endpoint-level drop
    assert pair.run_until(lambda: len(pair.sides["b"].data(cb)) == 200_000, max_time=300)
    names = {r["name"] for r in records}
    assert {"data_sent", "ack", "retransmit", "state", "drop"} <= names
    for rec in records:
        validate_record(rec)


def _stray() -> Packet:
    return Packet(0, int(PacketProtocol.DATAGRAM), Addr(1, 2), Addr(1, 1), 9, 9)

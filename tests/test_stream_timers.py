"""RTO (RFC 6298), SYN backoff, retransmit limit, Nagle, delayed ACK, persist, keepalive, idle (draft 8.5-8.12)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_helpers import ACK, FIN, LOCAL, REMOTE, RST, SYN, RawPeer, accepted, dialed

from pilot_proto.profile import Profile
from pilot_proto.stream import CloseReason, State, StreamConfig, StreamEndpoint
from pilot_proto.stream.events import Closed
from pilot_proto.stream.rto import RttEstimator
from pilot_proto.wire import SocketAddr

PROFILES = [Profile.DRAFT, Profile.GO_INTEROP]


# ----------------------------------------------------------------------------- RTO estimator
@pytest.mark.req("SES-041", "SES-042", "SES-043", "SES-044")
def test_rto_first_and_later_samples() -> None:
    est = RttEstimator(StreamConfig.for_profile())
    assert est.rto == 1.0 and est.srtt is None
    est.sample(0.1)
    assert est.srtt == pytest.approx(0.1) and est.rttvar == pytest.approx(0.05)
    assert est.rto == pytest.approx(0.3)  # 0.1 + 4 * 0.05
    est.sample(0.3)
    assert est.rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)
    assert est.srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.3)
    tiny = RttEstimator(StreamConfig.for_profile())
    tiny.sample(0.001)
    assert tiny.rto == 0.2  # clamped to 200 ms
    huge = RttEstimator(StreamConfig.for_profile())
    huge.sample(30.0)
    assert huge.rto == 10.0  # clamped to 10 s


@pytest.mark.req("SES-041", "SES-042", "SES-043", "SES-044")
@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(st.floats(0.0, 20.0, allow_nan=False), min_size=1, max_size=30))
def test_rto_matches_rfc6298_reference(samples: list[float]) -> None:
    est = RttEstimator(StreamConfig.for_profile())
    srtt = rttvar = 0.0
    for i, r in enumerate(samples):
        est.sample(r)
        if i == 0:
            srtt, rttvar = r, r / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
            srtt = 0.875 * srtt + 0.125 * r
        want = min(max(srtt + max(0.01, 4 * rttvar), 0.2), 10.0)
        assert est.rto == pytest.approx(want)
    assert 0.2 <= est.rto <= 10.0


@pytest.mark.req("SES-048", "SES-044")
def test_backoff_doubles_to_the_ceiling() -> None:
    est = RttEstimator(StreamConfig.for_profile())
    seen = []
    for _ in range(6):
        est.backoff()
        seen.append(est.rto)
    assert seen == [2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


# ----------------------------------------------------------------------------- SYN backoff
@pytest.mark.req("SES-045")
@pytest.mark.parametrize(("profile", "times", "fail_at"), [
    (Profile.DRAFT, [0, 1, 3, 7, 15, 23], 31),
    (Profile.GO_INTEROP, [0, 1, 3, 7, 8, 10, 14], 22),
], ids=["draft", "go-interop"])  # fmt: skip
def test_syn_retransmission_schedule(profile: Profile, times: list[int], fail_at: int) -> None:
    ep = StreamEndpoint(LOCAL, StreamConfig.for_profile(profile))
    cid = ep.connect(SocketAddr(REMOTE, 1000), 0.0)
    sent = [0.0 for _ in ep.packets_to_send()]
    peer = RawPeer(ep)
    for pkt in peer.advance(100.0):
        assert pkt.flags == SYN and pkt.seq == 0
    # replay to collect the times
    ep = StreamEndpoint(LOCAL, StreamConfig.for_profile(profile))
    cid = ep.connect(SocketAddr(REMOTE, 1000), 0.0)
    ep.packets_to_send()
    sent = [0.0]
    closed_at = None
    while (t := ep.get_timer()) is not None:
        ep.handle_timer(t)
        sent += [t for _ in ep.packets_to_send()]
        if any(isinstance(e, Closed) for e in ep.events()):
            closed_at = t
    assert sent == times and len(sent) - 1 == (5 if profile is Profile.DRAFT else 6)
    assert closed_at == fail_at
    with pytest.raises(Exception):  # noqa: B017 - gone
        ep.connection(cid)


@pytest.mark.req("SES-045")
def test_syn_ack_is_retransmitted_then_given_up() -> None:
    ep = StreamEndpoint(LOCAL)
    ep.listen(1000)
    peer = RawPeer(ep)
    peer.feed(peer.packet(SYN))
    again = peer.advance(40.0)
    assert [p.flags for p in again] == [SYN | ACK] * 5
    assert isinstance(peer.events[-1], Closed) and peer.events[-1].reason is CloseReason.CONNECT_TIMEOUT
    assert ep.active_count == 0


# ----------------------------------------------------------------------------- data retransmission
@pytest.mark.req("SES-046", "SES-048")
@pytest.mark.parametrize(("profile", "retx"), [(Profile.DRAFT, 8), (Profile.GO_INTEROP, 7)], ids=["draft", "go"])
def test_data_gives_up_after_the_retransmission_limit(profile: Profile, retx: int) -> None:
    ep, peer, cid = dialed(StreamConfig.for_profile(profile), our_isn=0, isn=0)
    ep.send(cid, b"hello", 0.0)
    (_first,) = ep.packets_to_send()
    sent = peer.advance(600.0)
    data = [p for p in sent if p.payload == b"hello"]
    assert len(data) == retx
    assert sent[-1].flags == RST
    closed = [e for e in peer.events if isinstance(e, Closed)]
    assert closed and closed[0].reason is CloseReason.TIMEOUT
    gaps = []
    t = 0.0
    # intervals double (1 s initial RTO) up to the 10 s cap
    ep2, _peer2, cid2 = dialed(StreamConfig.for_profile(profile), our_isn=0, isn=0)
    ep2.send(cid2, b"x", 0.0)
    ep2.packets_to_send()
    while (d := ep2.get_timer()) is not None and d < 600:
        ep2.handle_timer(d)
        if any(p.payload == b"x" for p in ep2.packets_to_send()):
            gaps.append(round(d - t, 6))
            t = d
    # the handshake measured ~0 s, so RTO starts at the 200 ms floor and doubles to the 10 s cap
    assert gaps == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0][:retx])


@pytest.mark.req("SES-047", "SES-041")
def test_karn_no_sample_from_retransmitted_segment() -> None:
    ep, peer, cid = dialed(our_isn=0, isn=0)
    conn = ep.connection(cid)
    samples = conn.rtt.samples  # the handshake gave one
    ep.send(cid, b"abc", 0.0)
    ep.packets_to_send()
    peer.advance(1.0)  # RTO fires, retransmits
    peer.feed(peer.packet(ACK, ack=4), now=1.05)
    assert conn.snd_una == 4 and conn.rtt.samples == samples
    ep.send(cid, b"def", 2.0)
    peer.feed(peer.packet(ACK, ack=7), now=2.1)
    assert conn.rtt.samples == samples + 1 and conn.srtt is not None


# ----------------------------------------------------------------------------- Nagle / segmentation
@pytest.mark.req("SES-090", "SES-091")
def test_nagle_holds_small_writes_until_ack_or_40ms() -> None:
    ep, peer, cid = dialed(our_isn=0, isn=0)
    ep.send(cid, b"a", 0.0)
    assert [p.payload for p in ep.packets_to_send()] == [b"a"]  # nothing in flight: goes at once
    ep.send(cid, b"b", 0.001)
    ep.send(cid, b"c", 0.002)
    assert ep.packets_to_send() == []
    out = peer.feed(peer.packet(ACK, ack=2), now=0.01)  # all acknowledged -> flush
    assert [p.payload for p in out] == [b"bc"]
    ep.send(cid, b"d", 0.02)
    assert ep.packets_to_send() == []
    assert peer.advance(0.0599) == []
    assert [p.payload for p in peer.advance(0.0601)] == [b"d"]  # 40 ms timer


@pytest.mark.req("SES-091", "SES-093", "SES-078", "SES-140")
def test_full_segments_flush_and_large_writes_are_segmented() -> None:
    ep, _peer, cid = dialed(StreamConfig.for_profile(mss=100), our_isn=0, isn=0)
    ep.send(cid, b"a", 0.0)
    ep.packets_to_send()
    ep.send(cid, bytes(250), 0.0)
    out = ep.packets_to_send()
    assert [len(p.payload) for p in out] == [100, 100]  # 50-byte tail waits (Nagle)
    ep2, _, cid2 = dialed(our_isn=0, isn=0)
    ep2.send(cid2, bytes(10 * 4096 + 5), 0.0)
    sizes = [len(p.payload) for p in ep2.packets_to_send()]
    assert sizes == [4096] * 10  # IW 10 segments; the rest waits for ACKs
    assert StreamConfig.for_profile().mss == 4096


@pytest.mark.req("SES-092")
def test_nodelay_sends_every_write() -> None:
    ep, _peer, cid = dialed(StreamConfig.for_profile(nodelay=True), our_isn=0, isn=0)
    for i, chunk in enumerate((b"a", b"b", b"c")):
        ep.send(cid, chunk, i * 0.001)
    assert [p.payload for p in ep.packets_to_send()] == [b"a", b"b", b"c"]
    ep2, _, cid2 = dialed(our_isn=0, isn=0)
    ep2.set_nodelay(cid2, True)
    ep2.send(cid2, b"a", 0.0)
    ep2.send(cid2, b"b", 0.0)
    assert len(ep2.packets_to_send()) == 2


# ----------------------------------------------------------------------------- delayed ACK
@pytest.mark.req("SES-100")
def test_delayed_ack_every_second_segment_or_40ms() -> None:
    _ep, peer, _cid = accepted(our_isn=0, isn=0)
    assert peer.feed(peer.packet(ACK, seq=1, ack=1, payload=b"x" * 10)) == []
    (ack,) = peer.feed(peer.packet(ACK, seq=11, ack=1, payload=b"y" * 10))
    assert ack.flags == ACK and ack.ack == 21 and ack.payload == b""
    assert peer.feed(peer.packet(ACK, seq=21, ack=1, payload=b"z"), now=1.0) == []
    assert peer.advance(1.0399) == []
    (late,) = peer.advance(1.0401)
    assert late.ack == 22


@pytest.mark.req("SES-101", "SES-060")
def test_out_of_order_is_acked_at_once_with_sack() -> None:
    _ep, peer, _cid = accepted(our_isn=0, isn=0)
    (ack,) = peer.feed(peer.packet(ACK, seq=11, ack=1, payload=b"y" * 10))
    assert ack.ack == 1 and ack.payload[:4] == b"SACK"


@pytest.mark.req("SES-102")
def test_sending_data_cancels_the_delayed_ack() -> None:
    ep, peer, cid = accepted(our_isn=0, isn=0)
    peer.feed(peer.packet(ACK, seq=1, ack=1, payload=b"q"))
    ep.send(cid, b"answer", 0.01)
    (data,) = ep.packets_to_send()
    assert data.ack == 2 and data.payload == b"answer"
    assert [p for p in peer.advance(0.2) if not p.payload] == []


# ----------------------------------------------------------------------------- flow control / persist
@pytest.mark.req("SES-081", "SES-082", "SES-083")
def test_zero_window_persist_probes_with_growing_intervals() -> None:
    ep, peer, cid = dialed(our_isn=0, isn=0, window=0)
    conn = ep.connection(cid)
    ep.send(cid, b"0123456789", 0.0)
    assert ep.packets_to_send() == []
    times, probes = [], []
    t = 0.0
    for _ in range(10):  # more probes than the retransmission limit: persist never gives up
        d = ep.get_timer()
        assert d is not None
        ep.handle_timer(d)
        for p in ep.packets_to_send():
            times.append(d - t)
            t = d
            probes.append(p)
            peer.feed(peer.packet(ACK, ack=1, window=0), now=d)  # still closed, probe refused
    assert all(len(p.payload) == 1 and p.payload == b"0" for p in probes)
    assert times[:4] == pytest.approx([0.5, 1.0, 2.0, 4.0]) and max(times) <= 30.0
    assert conn.state is State.ESTABLISHED
    out = peer.feed(peer.packet(ACK, ack=1, window=4), now=t + 0.1)
    assert b"".join(p.payload for p in out) == b"0123456789"


@pytest.mark.req("SES-082")
def test_go_profile_reads_window_zero_as_unlimited() -> None:
    ep, _peer, cid = dialed(StreamConfig.for_profile(Profile.GO_INTEROP), our_isn=0, isn=0, window=0)
    ep.send(cid, b"go", 0.0)
    assert [p.payload for p in ep.packets_to_send()] == [b"go"]


@pytest.mark.req("SES-080", "SES-081", "SES-051")
def test_receiver_window_closes_when_app_does_not_read_and_reopens() -> None:
    cfg = StreamConfig.for_profile(recv_buf_segments=4, mss=100)
    ep, peer, cid = accepted(cfg, our_isn=0, isn=0)
    ep.receive_packet(peer.packet(ACK, seq=1, ack=1, payload=bytes(100)), 0.0)
    ep.receive_packet(peer.packet(ACK, seq=101, ack=1, payload=bytes(100)), 0.0)
    (ack,) = ep.packets_to_send()
    assert ack.window == 2
    ep.receive_packet(peer.packet(ACK, seq=201, ack=1, payload=bytes(200)), 0.0)
    ep.receive_packet(peer.packet(ACK, seq=401, ack=1, payload=b"over"), 0.0)  # beyond the window
    acks = ep.packets_to_send()
    assert acks[-1].window == 0 and acks[-1].ack == 401
    assert ep.connection(cid).recv_unread == 400
    ev = ep.next_event()
    while ev is not None:
        ev = ep.next_event()
    updates = ep.packets_to_send()  # an update per read: reads of 100, 100 and 200 bytes (buffer of 4)
    assert [u.window for u in updates] == [1, 2, 4] and all(u.ack == 401 for u in updates)


# ----------------------------------------------------------------------------- keepalive / idle
@pytest.mark.req("SES-110", "SES-111")
def test_keepalive_every_30s_and_idle_close_at_120s() -> None:
    ep, peer, cid = accepted(our_isn=0, isn=0)
    sent = peer.advance(119.0)
    assert [p.flags for p in sent] == [ACK] * 3 and all(p.payload == b"" for p in sent)
    times = []
    ep2, _peer2, _cid2 = accepted(our_isn=0, isn=0)
    while (d := ep2.get_timer()) is not None and d < 119:
        ep2.handle_timer(d)
        times += [d for _ in ep2.packets_to_send()]
    assert times == [30.0, 60.0, 90.0]
    fin = peer.advance(120.5)
    assert fin and fin[0].flags & FIN
    conn = ep.connection(cid)
    assert conn.state is State.FIN_WAIT
    peer.feed(peer.packet(FIN | ACK, seq=1, ack=2), now=121.0)
    closed = [e for e in peer.events if isinstance(e, Closed)]
    assert closed and closed[0].reason is CloseReason.IDLE


@pytest.mark.req("SES-110")
def test_traffic_postpones_keepalive() -> None:
    ep, peer, cid = accepted(our_isn=0, isn=0)
    for i in range(1, 6):
        ep.send(cid, b"x", i * 20.0)
        ep.packets_to_send()
        peer.feed(peer.packet(ACK, seq=1, ack=1 + i), now=i * 20.0 + 0.05)
    assert [p for p in peer.advance(110.0) if p.flags == ACK and not p.payload] == []
    assert ep.connection(cid).state is State.ESTABLISHED
    assert RST  # keep the import honest


@pytest.mark.req("SES-082", "SES-083", "SES-046")
def test_window_closing_under_data_in_flight_probes_instead_of_giving_up() -> None:
    ep, peer, cid = dialed(StreamConfig.for_profile(mss=100), our_isn=0, isn=0, window=4)
    ep.send(cid, bytes(400), 0.0)
    assert len(ep.packets_to_send()) == 4
    peer.feed(peer.packet(ACK, ack=1, window=0), now=0.01)  # the receiver shrank its window to 0
    sent = peer.advance(200.0)
    conn = ep.connection(cid)
    assert conn.state is State.ESTABLISHED and len(sent) >= 8  # well past the retransmission limit
    out = peer.feed(peer.packet(ACK, ack=1, window=4), now=200.5)
    assert sorted({p.seq for p in out if p.payload}) == [1, 101, 201, 301]


@pytest.mark.req("SES-083", "SES-020")
def test_fin_outstanding_under_a_zero_window_is_probed() -> None:
    ep, peer, cid = dialed(our_isn=0, isn=0)
    ep.close(cid, 0.0)
    assert [p.flags & FIN for p in ep.packets_to_send()] == [FIN]
    peer.feed(peer.packet(ACK, ack=1, window=0), now=0.01)
    again = peer.advance(5.0)
    assert again and all(p.flags & FIN for p in again)
    peer.feed(peer.packet(ACK, ack=2, window=0), now=5.1)
    assert ep.connection(cid).state is State.TIME_WAIT

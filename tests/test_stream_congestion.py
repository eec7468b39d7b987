"""Congestion control behind the ABC (draft 8.7): IW, slow start, ABC avoidance, fast retransmit, RTO, cap."""

from __future__ import annotations

import pytest
from stream_helpers import ACK, dialed

from pilot_proto.profile import Profile
from pilot_proto.stream import CongestionController, DraftAIMD, NewRenoLike, StreamConfig
from pilot_proto.stream.congestion import make_controller
from pilot_proto.testing.link import LinkConfig
from pilot_proto.testing.pair import StreamPair

MSS = 4096


@pytest.mark.req("SES-070", "SES-071", "SES-072", "SES-077")
def test_draft_slow_start_then_avoidance() -> None:
    cc = DraftAIMD(StreamConfig.for_profile(initial_ssthresh=20 * MSS))
    assert cc.cwnd == 10 * MSS and cc.in_slow_start
    cc.on_ack(2 * MSS, 0)  # one ACK covering two segments: +1 segment (ABC L = 1)
    assert cc.cwnd == 11 * MSS
    for _ in range(9):
        cc.on_ack(MSS, 0)
    assert cc.cwnd == 20 * MSS and not cc.in_slow_start
    cc.on_ack(5 * MSS, 0)
    assert cc.cwnd == 20 * MSS  # avoidance: no growth before a full cwnd of bytes is acknowledged
    for _ in range(14):
        cc.on_ack(MSS, 0)
    assert cc.cwnd == 20 * MSS
    cc.on_ack(MSS, 0)
    assert cc.cwnd == 21 * MSS  # +1 segment per cwnd acknowledged (RFC 3465)
    big = DraftAIMD(StreamConfig.for_profile())
    for _ in range(1000):
        big.on_ack(MSS, 0)
    assert big.cwnd == 1 << 20


@pytest.mark.req("SES-075", "SES-076")
def test_draft_loss_responses() -> None:
    cc = DraftAIMD(StreamConfig.for_profile())
    cc.cwnd = 40 * MSS
    cc.on_fast_retransmit(0)
    assert cc.ssthresh == 20 * MSS and cc.cwnd == 20 * MSS
    cc.on_rto(0)
    assert cc.ssthresh == 10 * MSS and cc.cwnd == MSS
    cc.on_rto(0)
    assert cc.ssthresh == 2 * MSS  # floor: 2 segments


@pytest.mark.req("SES-075", "SES-076")
def test_go_newreno_responses() -> None:
    cc = NewRenoLike(StreamConfig.for_profile(Profile.GO_INTEROP))
    assert cc.ssthresh == 512 * 1024 and cc.cwnd == 10 * MSS
    cc.on_ack(5 * MSS, 0)
    assert cc.cwnd == 15 * MSS  # unlimited ABC in slow start
    cc.cwnd = 40 * MSS
    cc.on_fast_retransmit(0)
    assert cc.ssthresh == 20 * MSS and cc.cwnd == 23 * MSS
    cc.on_dupack_in_recovery()
    assert cc.cwnd == 24 * MSS
    cc.on_recovery_exit()
    assert cc.cwnd == 20 * MSS
    cc.on_ack(MSS, 0)
    assert cc.cwnd == 20 * MSS + MSS // 20
    cc.on_rto(0)
    assert cc.cwnd == 10 * MSS  # Go: back to IW (E-SES-5)
    cc.cwnd = MSS
    cc.on_rto(0)
    assert cc.ssthresh == MSS  # Go floor: 1 MSS (E-SES-4)


class _Fixed(CongestionController):
    name = "fixed"

    def on_ack(self, acked: int, flight: int) -> None:
        pass

    def on_fast_retransmit(self, flight: int) -> None:
        pass

    def on_rto(self, flight: int) -> None:
        pass


@pytest.mark.req("SES-070")
def test_algorithms_plug_in() -> None:
    cfg = StreamConfig.for_profile(congestion_factory=_Fixed, initial_window_segments=2)
    assert isinstance(make_controller(cfg), _Fixed)
    ep, _peer, cid = dialed(cfg, our_isn=0, isn=0)
    ep.send(cid, bytes(10 * MSS), 0.0)
    assert len(ep.packets_to_send()) == 2
    assert isinstance(make_controller(StreamConfig.for_profile(Profile.GO_INTEROP)), NewRenoLike)
    with pytest.raises(ValueError):
        StreamConfig.for_profile(congestion="cubic")


@pytest.mark.req("SES-073", "SES-074", "SES-075")
def test_three_duplicate_pure_acks_trigger_fast_retransmit() -> None:
    ep, peer, cid = dialed(StreamConfig.for_profile(nodelay=True), our_isn=0, isn=0)
    ep.send(cid, bytes(10 * MSS), 0.0)
    ep.packets_to_send()
    conn = ep.connection(cid)
    peer.feed(peer.packet(ACK, ack=1 + MSS), now=0.01)
    cwnd = conn.cwnd
    # data-bearing duplicates do not count (RFC 5681 3.2)
    for i in range(3):
        peer.feed(peer.packet(ACK, ack=1 + MSS, payload=b"d"), now=0.02 + i * 0.001)
        peer.seq += 1
    assert not conn.in_recovery
    out = []
    for i in range(2):
        out += peer.feed(peer.packet(ACK, ack=1 + MSS), now=0.03 + i * 0.001)
    assert not [p for p in out if p.seq == 1 + MSS and len(p.payload) == MSS]
    out = peer.feed(peer.packet(ACK, ack=1 + MSS), now=0.04)
    assert next(p.seq for p in out if p.payload) == 1 + MSS
    assert conn.in_recovery and conn.ssthresh == max(cwnd // 2, 2 * MSS) and conn.cwnd == conn.ssthresh


@pytest.mark.req("SES-076", "SES-048")
def test_rto_resets_cwnd_to_one_segment() -> None:
    ep, peer, cid = dialed(our_isn=0, isn=0)
    ep.send(cid, bytes(10 * MSS), 0.0)
    ep.packets_to_send()
    conn = ep.connection(cid)
    rto = conn.rto
    out = peer.advance(rto + 0.001)
    assert conn.cwnd == MSS and conn.ssthresh == 5 * MSS
    assert [p.seq for p in out if p.payload] == [1]  # only one segment fits cwnd
    assert conn.rto == pytest.approx(min(2 * rto, 10.0))


@pytest.mark.req("SES-081", "SES-077")
def test_effective_window_is_min_of_cwnd_and_peer_window() -> None:
    ep, _peer, cid = dialed(our_isn=0, isn=0, window=3)
    ep.send(cid, bytes(20 * MSS), 0.0)
    assert len(ep.packets_to_send()) == 3  # peer window (3 segments) < cwnd (10)
    ep2, _peer2, cid2 = dialed(our_isn=0, isn=0, window=500)
    ep2.send(cid2, bytes(20 * MSS), 0.0)
    assert len(ep2.packets_to_send()) == 10  # cwnd < peer window


@pytest.mark.req("SES-071", "SES-077", "SES-040")
@pytest.mark.parametrize("profile", [Profile.DRAFT, Profile.GO_INTEROP], ids=lambda p: p.value)
def test_cwnd_grows_to_the_cap_on_a_clean_path(profile: Profile) -> None:
    cfg = StreamConfig.for_profile(profile, send_buffer_bytes=8 << 20)  # the whole 8 MiB in one write
    pair = StreamPair(cfg, link=LinkConfig(delay=0.01), keep_events=False)
    ca, cb = pair.connect()
    data = bytes(8 << 20)
    pair.send("a", ca, data)
    assert pair.run_until(lambda: len(pair.sides["b"].data(cb)) == len(data), max_time=60)
    cwnd = pair.a.connection(ca).cwnd
    if profile is Profile.DRAFT:
        assert cwnd == 1 << 20  # slow start to the 1 MB cap (ssthresh starts at the cap)
    else:
        assert 512 * 1024 < cwnd <= 1 << 20  # Go: slow start to 512 KiB, then avoidance


@pytest.mark.req("SES-073", "SES-075", "SES-040", "SES-134")
@pytest.mark.parametrize("profile", [Profile.DRAFT, Profile.GO_INTEROP], ids=lambda p: p.value)
def test_loss_halves_and_transfer_completes(profile: Profile) -> None:
    records: list[dict] = []
    pair = StreamPair(StreamConfig.for_profile(profile), link=LinkConfig(delay=0.02, loss=0.02), seed=11,
                      tracer=records.append, keep_events=False)  # fmt: skip
    ca, cb = pair.connect()
    data = bytes(range(256)) * 8192
    pair.send("a", ca, data)
    assert pair.run_until(lambda: len(pair.sides["b"].data(cb)) == len(data), max_time=300)
    assert pair.sides["b"].data(cb) == data
    names = {r["name"] for r in records}
    assert "loss_fast_retransmit" in names and "retransmit" in names

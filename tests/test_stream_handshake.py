"""Handshake, teardown, TIME_WAIT, RST, version, datagrams and ping at the wire level (draft 6.3, 8.1-8.3, 8.13, 12)."""

from __future__ import annotations

import pytest
from stream_helpers import ACK, FIN, LOCAL, REMOTE, RST, SYN, RawPeer, accepted, dialed

from pilot_proto.errors import Action, DecodeError, ErrorCode, LocalProtocolError
from pilot_proto.profile import Profile
from pilot_proto.sansio import InputRejected
from pilot_proto.stream import CloseReason, State, StreamConfig, StreamEndpoint
from pilot_proto.stream.events import (
    Closed,
    Connected,
    ConnectionRequested,
    ControlReceived,
    DatagramReceived,
    PingReply,
    Reset,
    StreamEnded,
)
from pilot_proto.wire import Addr, PacketProtocol, SocketAddr

PROFILES = [Profile.DRAFT, Profile.GO_INTEROP]


@pytest.mark.req("SES-002", "SES-010", "SES-013", "VER-003")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.value)
def test_syn_carries_isn_window_and_version(profile: Profile) -> None:
    ep = StreamEndpoint(LOCAL, StreamConfig.for_profile(profile, recv_buf_segments=300), isn_source=lambda: 12345)
    cid = ep.connect(SocketAddr(REMOTE, 1000), 0.0)
    (syn,) = ep.packets_to_send()
    assert syn.flags == SYN and syn.seq == 12345 and syn.window == 300 and syn.version == 1
    assert syn.protocol == PacketProtocol.STREAM and syn.dst_port == 1000 and syn.src_port >= 49152
    assert ep.connection(cid).state is State.SYN_SENT


@pytest.mark.req("SES-003", "SES-011", "SES-012", "SES-013", "SES-004", "VER-004")
def test_three_way_handshake_both_roles() -> None:
    ep = StreamEndpoint(LOCAL, StreamConfig.for_profile(recv_buf_segments=200), isn_source=lambda: 900)
    ep.listen(1000)
    peer = RawPeer(ep, isn=50)
    (synack,) = peer.feed(peer.packet(SYN, window=77))
    assert synack.flags == SYN | ACK and synack.seq == 900 and synack.ack == 51 and synack.window == 200
    assert synack.version == 1 and synack.src_port == 1000 and synack.dst_port == 5000
    conn = next(iter(ep.connections()))
    assert conn.state is State.SYN_RECEIVED and conn.peer_window == 77
    assert isinstance(peer.events[0], ConnectionRequested)
    peer.seq = 51
    assert peer.feed(peer.packet(ACK, ack=901, window=80)) == []
    assert conn.state is State.ESTABLISHED and conn.peer_window == 80
    assert isinstance(peer.events[-1], Connected)
    # initiator side
    ep2, peer2, cid = dialed(our_isn=5, isn=60)
    assert ep2.connection(cid).rcv_nxt == 1
    assert any(isinstance(e, Connected) for e in peer2.events)


@pytest.mark.req("SES-012")
def test_initiator_reacks_a_retransmitted_syn_ack_and_responder_resends_syn_ack() -> None:
    _ep, peer, _cid = dialed(our_isn=5, isn=60)
    (ack,) = peer.feed(peer.packet(SYN | ACK, seq=60, ack=6))
    assert ack.flags == ACK and ack.ack == 61
    ep2 = StreamEndpoint(LOCAL, isn_source=lambda: 1)
    ep2.listen(1000)
    p2 = RawPeer(ep2, isn=3)
    first = p2.feed(p2.packet(SYN))
    again = p2.feed(p2.packet(SYN))
    assert first == again and again[0].flags == SYN | ACK
    assert ep2.active_count == 1


@pytest.mark.req("SES-020", "SES-021", "SES-006", "SES-007", "SES-120", "SES-121")
def test_active_close_time_wait_holds_port_for_ten_seconds() -> None:
    ep, peer, cid = dialed(our_isn=0, isn=0)
    port = peer.local_port
    ep.close(cid, 1.0)
    (fin,) = ep.packets_to_send()
    assert fin.flags == FIN | ACK and fin.seq == 1 and fin.ack == 1
    conn = ep.connection(cid)
    assert conn.state is State.FIN_WAIT
    peer.feed(peer.packet(ACK, ack=2), now=1.1)
    assert conn.state is State.TIME_WAIT and ep.active_count == 0 and ep.port_in_use(port)
    # the peer has not sent its FIN: data may still arrive, so Closed waits for FIN or the end of TIME_WAIT
    assert not any(isinstance(e, Closed) for e in peer.events)
    peer.advance(11.0)
    assert conn.state is State.TIME_WAIT
    peer.advance(11.2)
    assert conn.state is State.CLOSED and not ep.port_in_use(port)
    assert isinstance(peer.events[-1], Closed) and peer.events[-1].reason is CloseReason.NORMAL
    assert list(ep.connections()) == []


@pytest.mark.req("SES-121")
def test_go_profile_lets_time_wait_ports_be_reused() -> None:
    ep, peer, cid = dialed(StreamConfig.for_profile(Profile.GO_INTEROP), our_isn=0, isn=0)
    ep.close(cid, 0.0)
    (fin,) = ep.packets_to_send()
    assert fin.flags == FIN and fin.ack == 0  # Go FIN: no ACK bit (E-SES-2)
    peer.feed(peer.packet(FIN | ACK, ack=2))
    assert ep.connection(cid).state is State.TIME_WAIT
    assert not ep.port_in_use(peer.local_port)
    # re-dial from the same port: the TIME_WAIT connection is replaced
    cid2 = ep.connect(SocketAddr(REMOTE, 1000), 0.5, local_port=peer.local_port)
    assert ep.connection(cid2).state is State.SYN_SENT
    draft_ep, draft_peer, dcid = dialed(our_isn=0, isn=0)
    draft_ep.close(dcid, 0.0)
    draft_peer.feed(draft_peer.packet(ACK, ack=2))
    with pytest.raises(LocalProtocolError):
        draft_ep.connect(SocketAddr(REMOTE, 1000), 0.5, local_port=draft_peer.local_port)


@pytest.mark.req("SES-020", "SES-022")
def test_passive_close_acks_fin_then_sends_own_fin() -> None:
    ep, peer, cid = accepted(our_isn=0, isn=0)
    ep.send(cid, b"tail", 0.0)
    (_data,) = ep.packets_to_send()
    out = peer.feed(peer.packet(FIN | ACK, seq=1, ack=1))
    # the FIN is queued behind unacknowledged data; the ACK of the peer's FIN goes out at once
    assert [p.flags for p in out] == [FIN | ACK] or [p.flags for p in out] == [ACK, FIN | ACK]
    assert all(p.ack == 2 for p in out)
    conn = ep.connection(cid)
    assert conn.state is State.LAST_ACK
    assert any(isinstance(e, StreamEnded) for e in peer.events)
    peer.feed(peer.packet(ACK, seq=2, ack=1 + 4 + 1))
    assert conn.state is State.CLOSED
    assert isinstance(peer.events[-1], Closed)


@pytest.mark.req("SES-022")
def test_passive_close_without_auto_close_waits_in_close_wait() -> None:
    ep, peer, cid = accepted(StreamConfig.for_profile(auto_close_on_peer_fin=False), our_isn=0, isn=0)
    (ack,) = peer.feed(peer.packet(FIN | ACK, seq=1, ack=1))
    assert ack.flags == ACK and ack.ack == 2
    assert ep.connection(cid).state is State.CLOSE_WAIT
    ep.send(cid, b"still talking", 0.0)
    assert ep.packets_to_send()[0].payload == b"still talking"


@pytest.mark.req("SES-130", "SES-132")
def test_rst_validation_by_profile() -> None:
    ep, peer, cid = accepted(our_isn=0, isn=0)
    peer.feed(peer.packet(RST, seq=50_000_000))  # out of window: ignored under draft
    assert ep.connection(cid).state is State.ESTABLISHED
    assert not any(isinstance(e, Reset) for e in peer.events)
    peer.feed(peer.packet(RST, seq=1))
    assert cid not in [c.id for c in ep.connections()]
    assert [type(e) for e in peer.events[-2:]] == [Reset, Closed]
    assert peer.events[-1].reason is CloseReason.RESET  # type: ignore[union-attr]
    go, gpeer, _gcid = accepted(StreamConfig.for_profile(Profile.GO_INTEROP), our_isn=0, isn=0)
    gpeer.feed(gpeer.packet(RST, seq=0, ack=0))  # Go's RST carries zeros
    assert list(go.connections()) == []


@pytest.mark.req("SES-131")
def test_no_listener_gets_rst_and_rst_is_never_answered() -> None:
    ep = StreamEndpoint(LOCAL)
    peer = RawPeer(ep, isn=41)
    (rst,) = peer.feed(peer.packet(SYN))
    assert rst.flags == RST and rst.ack == 42 and rst.dst == REMOTE and rst.dst_port == 5000 and rst.src_port == 1000
    (rst2,) = peer.feed(peer.packet(ACK, seq=10, ack=20, payload=b"abc"))
    assert rst2.seq == 20 and rst2.ack == 13
    assert peer.feed(peer.packet(RST)) == []
    goep = StreamEndpoint(LOCAL, StreamConfig.for_profile(Profile.GO_INTEROP))
    (grst,) = RawPeer(goep).feed(RawPeer(goep).packet(SYN))
    assert grst.seq == 0 and grst.ack == 0


@pytest.mark.req("SES-130")
def test_refused_dial_reports_reset_then_closed() -> None:
    ep = StreamEndpoint(LOCAL, isn_source=lambda: 10)
    cid = ep.connect(SocketAddr(REMOTE, 1000), 0.0)
    syn = ep.packets_to_send()[0]
    peer = RawPeer(ep, port=1000, local_port=syn.src_port)
    peer.feed(peer.packet(RST, seq=0, ack=99))  # wrong ack: ignored (draft), reported as rejected
    assert ep.connection(cid).state is State.SYN_SENT
    (rej,) = peer.events
    assert isinstance(rej, InputRejected) and rej.error.requirement == "SES-132" and rej.action is Action.DROP
    peer.events.clear()
    peer.feed(peer.packet(RST, seq=0, ack=11))
    assert [type(e) for e in peer.events] == [Reset, Closed]


@pytest.mark.req("VER-005", "VER-006", "VER-007", "VER-002")
def test_version_mismatch(caplog: pytest.LogCaptureFixture) -> None:
    ep, peer, cid = accepted(our_isn=0, isn=0)
    caplog.set_level("DEBUG", logger="pilot_proto.stream")
    out = peer.feed(peer.packet(ACK, seq=1, ack=1, payload=b"v2 data", version=2))
    assert out == [] and ep.connection(cid).rcv_nxt == 1 and ep.dropped["version_mismatch"] == 1
    assert "version 2" in caplog.text
    fresh = RawPeer(ep, port=6000)
    (rst,) = fresh.feed(fresh.packet(SYN, version=2))
    assert rst.flags == RST and rst.version == 1
    assert ep.active_count == 1
    go = StreamEndpoint(LOCAL, StreamConfig.for_profile(Profile.GO_INTEROP))
    go.listen(1000)
    gp = RawPeer(go)
    assert gp.feed(gp.packet(SYN, version=2)) == []  # Go drops in Unmarshal (E-VER-1)
    # version 0 is never produced by us
    assert all(p.version == 1 for p in [rst])


@pytest.mark.req("VER-008", "VER-009", "VER-010")
def test_receive_bytes_decodes_with_version_left_to_session_layer() -> None:
    ep = StreamEndpoint(LOCAL)
    ep.listen(1000)
    peer = RawPeer(ep)
    ep.receive_bytes(peer.packet(SYN, version=3).encode(), 0.0)
    (rst,) = ep.packets_to_send()
    assert rst.flags == RST
    ep.events()
    ep.receive_bytes(b"\x12" * 20, 0.0)  # bad bytes never raise out of a receive call
    (rej,) = ep.events()
    assert isinstance(rej, InputRejected) and isinstance(rej.error, DecodeError)
    assert rej.error.code is ErrorCode.TRUNCATED and rej.size == 20 and ep.packets_to_send() == []


@pytest.mark.req("SES-150", "SES-151")
def test_datagrams() -> None:
    ep = StreamEndpoint(LOCAL)
    ep.send_datagram(SocketAddr(REMOTE, 53), b"query", 0.0)
    ep.send_datagram(SocketAddr(REMOTE, 53), b"again", 0.0)
    d1, d2 = ep.packets_to_send()
    assert d1.protocol == PacketProtocol.DATAGRAM and d1.flags == 0 and (d1.seq, d1.ack, d1.window) == (0, 0, 0)
    assert d1.payload == b"query" and d1.src_port != d2.src_port  # fresh ephemeral port per send
    peer = RawPeer(ep)
    peer.feed(peer.packet(0, protocol=PacketProtocol.DATAGRAM, payload=b"hello", dst_port=77))
    peer.feed(peer.packet(0, protocol=PacketProtocol.DATAGRAM, payload=b"", dst_port=77))
    hello, rej = peer.events
    assert hello == DatagramReceived(REMOTE, 5000, 77, b"hello")
    assert isinstance(rej, InputRejected) and rej.error.requirement == "SES-151"
    assert ep.dropped["empty_datagram"] == 1


@pytest.mark.req("SES-152")
def test_control_ping_both_directions() -> None:
    ep = StreamEndpoint(LOCAL)
    peer = RawPeer(ep)
    (reply,) = peer.feed(peer.packet(0, seq=41, protocol=PacketProtocol.CONTROL, payload=b"ping!", dst_port=0))
    assert reply.protocol == PacketProtocol.CONTROL and reply.flags == ACK and reply.src_port == 0
    assert reply.dst_port == 5000 and reply.seq == 41 and reply.ack == 42 and reply.payload == b"ping!"
    seq = ep.ping(REMOTE, 1.0, b"x")
    (req,) = ep.packets_to_send()
    assert req.dst_port == 0 and req.seq == seq and req.protocol == PacketProtocol.CONTROL
    peer.port = req.src_port
    reply_pkt = peer.packet(ACK, seq=seq, ack=seq + 1, protocol=PacketProtocol.CONTROL, payload=b"x")
    peer.feed(reply_pkt._replace(src_port=0, dst_port=req.src_port), now=1.25)
    assert peer.events[-1] == PingReply(REMOTE, seq, b"x", 0.25)
    # an unsolicited reply and other control ports
    peer.feed(peer.packet(0, seq=9, protocol=PacketProtocol.CONTROL, dst_port=1005))
    assert peer.events[-1] == ControlReceived(REMOTE, req.src_port, 1005, 0, 9, 0, b"")
    peer.feed(peer.packet(ACK, seq=9, ack=10, protocol=PacketProtocol.CONTROL, dst_port=0)._replace(src_port=0))
    assert ep.dropped["unsolicited_ping_reply"] == 1


@pytest.mark.req("SES-133")
def test_packets_for_another_address_are_dropped() -> None:
    ep = StreamEndpoint(LOCAL)
    ep.listen(1000)
    peer = RawPeer(ep)
    assert peer.feed(peer.packet(SYN)._replace(dst=Addr(0, 99))) == []
    assert ep.dropped["wrong_destination"] == 1


@pytest.mark.req("SES-001")
def test_app_errors_are_typed() -> None:
    ep = StreamEndpoint(LOCAL)
    with pytest.raises(LocalProtocolError) as info:
        ep.send(42, b"x", 0.0)
    assert info.value.code is ErrorCode.CONNECTION_CLOSED
    ep2, _peer, cid = dialed()
    ep2.close(cid, 0.0)
    with pytest.raises(LocalProtocolError) as info:
        ep2.send(cid, b"late", 0.0)
    assert info.value.code is ErrorCode.CONNECTION_CLOSED
    with pytest.raises(ValueError):
        StreamConfig.for_profile(mss=0)
    with pytest.raises(LocalProtocolError):
        ep.listen(70000)


@pytest.mark.req("SES-001")
def test_connection_limits_answer_rst() -> None:
    ep = StreamEndpoint(LOCAL, StreamConfig.for_profile(max_connections_per_port=2))
    ep.listen(1000)
    for port in (1, 2):
        RawPeer(ep, port=port).feed(RawPeer(ep, port=port).packet(SYN))
    p3 = RawPeer(ep, port=3)
    (rst,) = p3.feed(p3.packet(SYN))
    assert rst.flags == RST and ep.active_count == 2 and ep.dropped["connection_limit"] == 1


@pytest.mark.req("SES-121", "SES-004")
def test_go_profile_new_syn_on_a_time_wait_tuple_starts_a_new_connection() -> None:
    for profile, fresh in ((Profile.GO_INTEROP, True), (Profile.DRAFT, False)):
        ep, peer, cid = accepted(StreamConfig.for_profile(profile), our_isn=0, isn=0)
        ep.close(cid, 0.0)
        ep.packets_to_send()
        peer.feed(peer.packet(FIN | ACK, seq=1, ack=2))
        assert ep.connection(cid).state is State.TIME_WAIT
        out = peer.feed(peer.packet(SYN, seq=5000), now=1.0)
        assert (out[0].flags == SYN | ACK) is fresh
        assert (cid not in [c.id for c in ep.connections()]) is fresh


@pytest.mark.req("SES-005", "SES-134")
def test_send_and_close_before_the_handshake_completes_still_delivers() -> None:
    ep = StreamEndpoint(LOCAL, isn_source=lambda: 0)
    cid = ep.connect(SocketAddr(REMOTE, 1000), 0.0)
    ep.send(cid, b"early", 0.0)
    ep.close(cid, 0.0)
    (syn,) = ep.packets_to_send()
    assert ep.connection(cid).state is State.SYN_SENT
    peer = RawPeer(ep, port=1000, isn=0, local_port=syn.src_port)
    out = peer.feed(peer.packet(SYN | ACK, ack=1))
    assert [(p.flags, p.payload) for p in out if p.payload or p.flags & FIN][:2] == [(ACK, b"early"), (FIN | ACK, b"")]
    assert ep.connection(cid).state is State.FIN_WAIT

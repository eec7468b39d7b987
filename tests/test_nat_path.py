"""Path manager / beacon client, sans-IO: strategy (9.4), discovery (9.1), punching (9.2), relay (9.3)."""

from __future__ import annotations

import pytest

from pilot_proto.errors import ErrorCode, LocalProtocolError
from pilot_proto.nat import (
    Datagram,
    DiscoveryFailed,
    EndpointDiscovered,
    FrameReceived,
    NatConfig,
    PathDirect,
    PathManager,
    PathRelayed,
    PathState,
    PeerUnreachable,
    strategy_duration,
)
from pilot_proto.nat.beacon_client import frame_sender
from pilot_proto.profile import Profile
from pilot_proto.sansio import InputRejected
from pilot_proto.wire.address import Addr
from pilot_proto.wire.beacon import (
    Discover,
    DiscoverReply,
    Endpoint,
    PunchCommand,
    PunchRequest,
    Relay,
    RelayDeliver,
    decode_beacon,
    encode_beacon,
)
from pilot_proto.wire.frames import PlaintextFrame, encode_frame
from pilot_proto.wire.header import Packet, PacketProtocol, encode_packet

BEACON = Endpoint("203.0.113.1", 9001)
PEER = Endpoint("198.51.100.2", 40001)
ME_PUBLIC = Endpoint("198.51.100.1", 40000)
EVIL = Endpoint("192.0.2.66", 6666)
FRAME = b"PILS" + bytes(36)


def manager(profile: Profile = Profile.DRAFT, beacon: Endpoint | None = BEACON, **kw: object) -> PathManager:
    counter = iter(range(1, 10_000))
    pm = PathManager(
        1, beacon, NatConfig.for_profile(profile, **kw), probe=lambda peer: b"PING" + bytes([next(counter)])
    )
    pm.start(0.0)
    pm.datagrams_to_send()
    return pm


def run_timers(pm: PathManager, until: float) -> list[tuple[float, Datagram]]:
    out: list[tuple[float, Datagram]] = []
    while (t := pm.get_timer()) is not None and t <= until:
        pm.handle_timer(t)
        out.extend((t, d) for d in pm.datagrams_to_send())
    return out


@pytest.mark.req("NAT-030", "NAT-031", "NAT-032", "NAT-033", "NAT-011")
def test_strategy_three_direct_then_three_relay_then_error() -> None:
    pm = manager(rediscover_interval=None)
    pm.connect(2, 0.0, PEER)
    first = pm.datagrams_to_send()
    assert first[0] == Datagram(encode_beacon(PunchRequest(1, 2)), BEACON)
    assert [d.addr for d in first[1:]] == [PEER]
    sent = run_timers(pm, 100.0)
    direct = [t for t, d in sent if d.addr == PEER]
    relayed = [(t, decode_beacon(d.data)) for t, d in sent if d.addr == BEACON and d.data[0] == 0x05]
    assert direct == [1.0, 3.0]  # attempts 2 and 3 (attempt 1 at t=0)
    assert [t for t, _ in relayed] == [7.0, 8.0, 10.0]
    assert all(isinstance(m, Relay) and m.sender == 1 and m.dest == 2 for _, m in relayed)
    assert pm.state(2) is PathState.FAILED
    [ev] = [e for e in pm.events() if isinstance(e, PeerUnreachable)]
    assert ev.peer == 2 and ev.error.code is ErrorCode.UNREACHABLE and ev.error.requirement == "NAT-033"
    with pytest.raises(LocalProtocolError) as info:
        pm.send(2, FRAME, 20.0)
    assert info.value.code is ErrorCode.UNREACHABLE
    pm.connect(2, 30.0, PEER)  # the application may dial again
    assert pm.state(2) is PathState.DIRECT_TRYING


@pytest.mark.req("NAT-030", "NAT-033")
def test_without_beacon_direct_failure_is_final() -> None:
    pm = manager(beacon=None)
    pm.connect(2, 0.0, PEER)
    assert [d.addr for d in pm.datagrams_to_send()] == [PEER]  # no punch request without a beacon
    run_timers(pm, 100.0)
    assert pm.state(2) is PathState.FAILED


@pytest.mark.req("NAT-024", "NAT-034", "NAT-022")
@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
def test_relay_is_transparent(profile: Profile) -> None:
    pm = manager(profile)
    pm.connect(2, 0.0, PEER)
    pm.confirm_direct(2, PEER, 0.1)
    pm.datagrams_to_send()
    pm.send(2, FRAME, 0.2)
    assert pm.datagrams_to_send() == [Datagram(FRAME, PEER)]
    pm.confirm_relay(2, 0.3)
    assert pm.state(2) is PathState.RELAY
    pm.send(2, FRAME, 0.4)
    [d] = pm.datagrams_to_send()
    assert d.addr == BEACON and decode_beacon(d.data) == Relay(1, 2, FRAME)
    delivered = FRAME if profile is Profile.DRAFT else encode_beacon(RelayDeliver(2, FRAME))
    pm.events()
    pm.receive_datagram(delivered, BEACON, 0.5)
    hint = 0 if profile is Profile.DRAFT else 2  # draft: the frame's own sender field; Go: the 0x06 header
    assert pm.events() == [FrameReceived(FRAME, BEACON, True, hint)]
    pm.receive_datagram(FRAME, PEER, 0.6)
    assert pm.events() == [FrameReceived(FRAME, PEER, False, 0)]


@pytest.mark.req("NAT-023", "NAT-022")
def test_go_client_refuses_bare_frames_from_the_beacon() -> None:
    pm = manager(Profile.GO_INTEROP)
    pm.receive_datagram(FRAME, BEACON, 0.0)
    [ev] = pm.events()
    assert isinstance(ev, InputRejected) and ev.layer == "beacon-client" and ev.error.code is ErrorCode.BAD_MAGIC
    assert ev.error.requirement == "NAT-023" and pm.beacon.stats["malformed"] == 1


@pytest.mark.req("NAT-035", "NAT-043")
def test_relayed_peer_returns_to_direct_on_authenticated_evidence() -> None:
    pm = manager(relay_probe_interval=60.0)
    pm.connect(2, 0.0, PEER)
    pm.confirm_relay(2, 8.0)
    assert pm.events()[-1] == PathRelayed(2)
    pm.datagrams_to_send()
    pm.receive_datagram(b"PILP" + (2).to_bytes(4, "big"), Endpoint("198.51.100.2", 40077), 9.0)
    assert pm.state(2) is PathState.RELAY  # a PILP is a candidate only
    probes = [d.addr for t, d in run_timers(pm, 68.0) if d.addr != BEACON]
    assert probes == [PEER, Endpoint("198.51.100.2", 40077)]  # relay->direct probe to every candidate
    pm.confirm_direct(2, Endpoint("198.51.100.2", 40077), 68.1)
    assert pm.state(2) is PathState.DIRECT
    assert PathDirect(2, Endpoint("198.51.100.2", 40077)) in pm.events()


@pytest.mark.req("NAT-001", "NAT-003", "NAT-009")
def test_discovery_and_rediscovery() -> None:
    pm = PathManager(1, BEACON, NatConfig(rediscover_interval=25.0))
    pm.start(0.0)
    assert pm.datagrams_to_send() == [Datagram(encode_beacon(Discover(1)), BEACON)]
    pm.receive_datagram(encode_beacon(DiscoverReply(ME_PUBLIC)), BEACON, 0.05)
    assert pm.events() == [EndpointDiscovered(ME_PUBLIC)] and pm.beacon.endpoint == ME_PUBLIC
    assert pm.get_timer() == pytest.approx(25.05)
    pm.handle_timer(25.05)
    assert pm.datagrams_to_send() == [Datagram(encode_beacon(Discover(1)), BEACON)]
    pm.receive_datagram(encode_beacon(DiscoverReply(ME_PUBLIC)), BEACON, 25.1)
    assert pm.events() == []  # unchanged endpoint: no new event
    moved = Endpoint("198.51.100.1", 40009)
    pm.handle_timer(50.1)
    pm.receive_datagram(encode_beacon(DiscoverReply(moved)), BEACON, 50.2)
    assert pm.events() == [EndpointDiscovered(moved)]


@pytest.mark.req("NAT-008")
def test_discovery_times_out_and_retries() -> None:
    pm = PathManager(1, BEACON, NatConfig(discover_timeout=5.0, discover_retries=3, rediscover_interval=None))
    pm.start(0.0)
    pm.datagrams_to_send()
    sent = run_timers(pm, 100.0)
    assert [t for t, _ in sent] == [5.0, 10.0]
    assert pm.events() == [DiscoveryFailed(3)] and pm.get_timer() is None


@pytest.mark.req("NAT-004")
def test_configured_public_endpoint_skips_discovery() -> None:
    pm = PathManager(1, BEACON, NatConfig(), public_endpoint=ME_PUBLIC)
    pm.start(0.0)
    assert pm.datagrams_to_send() == [] and pm.events() == [EndpointDiscovered(ME_PUBLIC)]


@pytest.mark.req("NAT-010")
def test_discover_reply_only_from_beacon_and_only_when_asked() -> None:
    pm = manager(rediscover_interval=None)
    pm.receive_datagram(encode_beacon(DiscoverReply(ME_PUBLIC)), BEACON, 0.1)
    pm.events()
    pm.receive_datagram(encode_beacon(DiscoverReply(EVIL)), EVIL, 0.2)  # wrong source
    pm.receive_datagram(encode_beacon(DiscoverReply(EVIL)), BEACON, 0.3)  # nothing outstanding
    spoofed, unsolicited = pm.events()
    assert isinstance(spoofed, InputRejected) and spoofed.code is ErrorCode.SPOOFED and spoofed.source == EVIL
    assert isinstance(unsolicited, InputRejected) and unsolicited.code is ErrorCode.INVALID_STATE
    assert unsolicited.error.requirement == "NAT-010" and pm.beacon.endpoint == ME_PUBLIC
    assert pm.beacon.stats["spoofed"] == 1 and pm.beacon.stats["unsolicited_reply"] == 1


@pytest.mark.req("NAT-015", "NAT-040", "NAT-041", "TUN-027")
@pytest.mark.parametrize(("profile", "pilp"), [(Profile.DRAFT, b"PILP\x00\x00\x00\x01"), (Profile.GO_INTEROP, b"PILP")])
def test_punch_command_sends_three_pilps(profile: Profile, pilp: bytes) -> None:
    pm = manager(profile)
    pm.connect(2, 0.0, PEER)
    pm.datagrams_to_send()
    other = Endpoint("198.51.100.2", 40050)
    pm.receive_datagram(encode_beacon(PunchCommand(other)), EVIL, 0.1)  # not from the beacon: ignored
    assert pm.datagrams_to_send() == [] and pm.beacon.stats["spoofed"] == 1
    pm.receive_datagram(encode_beacon(PunchCommand(other)), BEACON, 0.1)
    assert pm.datagrams_to_send() == [Datagram(pilp, other)] * 3
    assert pm.peers[2].candidates == [other]  # a candidate for the peer we asked to punch
    assert pm.state(2) is PathState.DIRECT_TRYING


@pytest.mark.req("NAT-041", "NAT-046")
def test_unsolicited_punch_commands_only_punch_and_are_rate_limited() -> None:
    pm = manager(unsolicited_punch_burst=2.0, unsolicited_punch_rate=1.0)
    pm.connect(2, 0.0, PEER)
    pm.confirm_direct(2, PEER, 0.1)
    pm.datagrams_to_send()
    for i in range(5):
        pm.receive_datagram(encode_beacon(PunchCommand(Endpoint("192.0.2.9", 1000 + i))), BEACON, 1.0)
    assert len(pm.datagrams_to_send()) == 2 * 3
    assert pm.stats["punch_rate_limited"] == 3
    assert pm.state(2) is PathState.DIRECT and pm.peers[2].direct == PEER and pm.peers[2].candidates == []


@pytest.mark.req("NAT-043", "TUN-026", "NAT-046")
@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
def test_pilp_source_is_a_candidate_under_draft_only(profile: Profile) -> None:
    pm = manager(profile, max_candidates=2, use_punch=False)
    pm.connect(2, 0.0, PEER)
    for port in (1, 2, 3):
        pm.receive_datagram(b"PILP\x00\x00\x00\x02", Endpoint("198.51.100.2", port), 0.1)
    pm.receive_datagram(b"PILP\x00\x00\x00\x09", Endpoint("198.51.100.9", 9), 0.1)  # unknown peer: ignored
    pm.receive_datagram(b"PILP", Endpoint("198.51.100.2", 4), 0.1)
    pm.receive_datagram(b"PIL", Endpoint("198.51.100.2", 5), 0.1)
    expected = [Endpoint("198.51.100.2", 3), Endpoint("198.51.100.2", 2)] if profile is Profile.DRAFT else []
    assert pm.peers[2].candidates == expected
    assert len(pm.peers) == 1
    assert not [e for e in pm.events() if isinstance(e, FrameReceived)]  # PILP is never passed up


@pytest.mark.req("NAT-042")
def test_relay_deliver_checks() -> None:
    pm = manager(Profile.GO_INTEROP)
    pm.receive_datagram(encode_beacon(RelayDeliver(2, FRAME)), EVIL, 0.0)  # not from the beacon
    pm.receive_datagram(encode_beacon(RelayDeliver(2, b"PILP")), BEACON, 0.0)  # punch inside relay
    pm.receive_datagram(encode_beacon(RelayDeliver(2, b"PI")), BEACON, 0.0)  # too short for a frame
    pm.receive_datagram(encode_beacon(RelayDeliver(2, b"\x01abcd")), BEACON, 0.0)  # nested beacon message
    refused = pm.events()
    assert [(e.code, e.layer) for e in refused if isinstance(e, InputRejected)] == [
        (ErrorCode.SPOOFED, "beacon-client")] + [(ErrorCode.BAD_VALUE, "beacon-client")] * 3  # fmt: skip
    assert len(refused) == 4
    pm.receive_datagram(encode_beacon(RelayDeliver(7, FRAME)), BEACON, 0.0)
    [ev] = pm.events()
    assert isinstance(ev, FrameReceived) and ev.sender_hint == 7 and ev.via_relay
    assert pm.peers == {}  # a hint only: no path state created or changed


@pytest.mark.req("NAT-036")
def test_keepalive_on_idle_direct_path() -> None:
    pm = manager(keepalive_interval=25.0, rediscover_interval=None)
    pm.connect(2, 0.0, PEER)
    pm.confirm_direct(2, PEER, 0.5)
    pm.datagrams_to_send()
    pm.send(2, FRAME, 10.0)
    assert pm.datagrams_to_send() == [Datagram(FRAME, PEER)]
    sent = run_timers(pm, 60.0)
    assert [t for t, d in sent if d.addr == PEER] == [35.0, 60.0]  # 25 s after the last send, then every 25 s


@pytest.mark.req("NAT-030", "NAT-034")
def test_send_rules() -> None:
    pm = manager()
    with pytest.raises(LocalProtocolError) as info:
        pm.send(9, FRAME, 0.0)
    assert info.value.code is ErrorCode.UNKNOWN_PEER
    pm.connect(2, 0.0, PEER)
    pm.datagrams_to_send()
    pm.send(2, FRAME, 0.1)  # while trying direct: to every target
    assert pm.datagrams_to_send() == [Datagram(FRAME, PEER)]
    pm.confirm_direct(2, PEER, 0.2)
    pm.connect(2, 0.3, PEER)  # idempotent while connected
    assert pm.datagrams_to_send() == [] and pm.state(2) is PathState.DIRECT


@pytest.mark.req("NAT-046")
def test_peer_table_is_bounded() -> None:
    pm = manager(max_peers=2, beacon=None)
    pm.connect(2, 0.0, PEER)
    pm.connect(3, 0.0, PEER)
    with pytest.raises(LocalProtocolError) as info:
        pm.connect(4, 0.0, PEER)
    assert info.value.code is ErrorCode.TABLE_FULL
    run_timers(pm, 100.0)  # both fail -> their slots can be reused
    pm.connect(4, 100.0, PEER)
    assert pm.state(4) is PathState.DIRECT_TRYING


@pytest.mark.req("NAT-035")
def test_responder_learns_relay_path_and_schedules_direct_probes() -> None:
    pm = manager(relay_probe_interval=60.0, rediscover_interval=None)
    pm.confirm_relay(2, 5.0)  # first frame from node 2 arrived via the beacon and authenticated
    assert pm.state(2) is PathState.RELAY and pm.events() == [PathRelayed(2)]
    assert pm.peers[2].deadline == 65.0
    pm.connect(2, 6.0, PEER)  # the registry tells us node 2's locator
    assert pm.state(2) is PathState.RELAY and pm.datagrams_to_send() == []
    assert [d.addr for _, d in run_timers(pm, 65.0) if d.addr != BEACON] == [PEER]


@pytest.mark.req("NAT-030")
def test_connect_during_a_dial_does_not_restart_it() -> None:
    pm = manager(rediscover_interval=None)
    pm.connect(2, 0.0, PEER)
    pm.datagrams_to_send()
    pm.connect(2, 0.5, PEER)
    assert pm.datagrams_to_send() == [] and pm.peers[2].attempts == 1
    moved = Endpoint("198.51.100.2", 40002)
    pm.connect(2, 0.6, moved)
    assert pm.peers[2].registered == moved
    assert [d.addr for _, d in run_timers(pm, 1.0) if d.addr != BEACON] == [moved]


@pytest.mark.req("NAT-042", "PKT-001")
def test_sender_hint_of_a_plaintext_frame_is_its_source_node() -> None:
    """A PILT frame names no sender; the hint is the inner header's source node (bytes 6-9, draft 6.1)."""
    pkt = Packet(0, PacketProtocol.CONTROL, Addr(1, 0x0A0B0C0D), Addr(1, 2), 0, 0, 0, 0, 0, b"hi")
    frame = encode_frame(PlaintextFrame(encode_packet(pkt)))
    assert frame_sender(frame, Profile.DRAFT) == 0x0A0B0C0D
    pm = manager()
    pm.receive_datagram(frame, PEER, 1.0)
    assert pm.events() == [FrameReceived(frame, PEER, False, 0x0A0B0C0D)]


@pytest.mark.req("NAT-003")
@pytest.mark.parametrize(
    ("host", "private"),
    [("127.0.0.1", True), ("10.1.2.3", True), ("172.31.0.1", True), ("172.32.0.1", False), ("192.168.1.1", True),
     ("169.254.1.1", True), ("::1", True), ("fd00::1", True), ("fe80::1", True), ("::ffff:10.0.0.1", True),
     ("198.51.100.1", False), ("203.0.113.7", False), ("8.8.8.8", False), ("2001:db8::1", False)],
)  # fmt: skip
def test_discovered_endpoint_says_whether_go_would_discard_it(host: str, private: bool) -> None:
    assert EndpointDiscovered(Endpoint(host, 1)).private is private


@pytest.mark.req("NAT-030", "NAT-032", "NAT-033")
@pytest.mark.parametrize("beacon", [BEACON, None], ids=["beacon", "no-beacon"])
def test_strategy_duration_is_when_the_peer_becomes_unreachable(beacon: Endpoint | None) -> None:
    cfg = NatConfig(rediscover_interval=None)
    pm = PathManager(1, beacon, cfg)
    pm.start(0.0)
    pm.connect(2, 0.0, PEER)
    failed_at = None
    while (t := pm.get_timer()) is not None and failed_at is None:
        pm.handle_timer(t)
        if any(isinstance(e, PeerUnreachable) for e in pm.events()):
            failed_at = t
    assert failed_at == strategy_duration(cfg, beacon is not None) == (14.0 if beacon else 7.0)


@pytest.mark.req("NAT-015", "NAT-041")
@pytest.mark.parametrize("skip", [False, True], ids=["draft-and-GoB", "skip_unroutable_punch"])
def test_punch_to_unroutable_targets_only_when_configured(skip: bool) -> None:
    pm = manager(skip_unroutable_punch=skip)
    pm.connect(2, 0.0, PEER)
    pm.datagrams_to_send()
    pm.events()
    for host in ("10.0.0.5", "127.0.0.1", "169.254.0.9", "0.0.0.0", "::1"):
        pm.receive_datagram(encode_beacon(PunchCommand(Endpoint(host, 4000))), BEACON, 0.1)
    out, events = pm.datagrams_to_send(), pm.events()
    if skip:  # GoC (E-NAT-5): refused, each once, and nothing learnt
        assert out == [] and pm.peers[2].candidates == []
        refused = [(e.code, e.layer) for e in events if isinstance(e, InputRejected)]
        assert refused == [(ErrorCode.BAD_VALUE, "path")] * 5 and len(events) == 5
    else:
        assert len(out) == 5 * 3 and events == [] and len(pm.peers[2].candidates) == 4  # max_candidates
    pm.receive_datagram(encode_beacon(PunchCommand(Endpoint("198.51.100.7", 4000))), BEACON, 0.2)
    assert len(pm.datagrams_to_send()) == 3  # a routable target is punched either way

"""Spoofed beacon messages and punch frames cannot redirect a live session (NAT-040..045).

The attacker sits at its own public address, can forge any source address
(including the beacon's) and sees every datagram on the public wire.  A and B
sit behind full-cone NATs so every forged datagram actually reaches them (a
stricter NAT would drop most of them, which would prove nothing about the
client's logic).  After each attack, A and B must still be on the same path
and data must still flow both ways; the attacker must never receive a data
frame.
"""

from __future__ import annotations

import pytest

from pilot_proto.nat import NatConfig, PathState
from pilot_proto.profile import Profile
from pilot_proto.testing.nat import BEACON_ENDPOINT, NatType, Scenario, SimSink, ToyTunnel
from pilot_proto.wire.beacon import Discover, Endpoint, PunchCommand, RelayDeliver, encode_beacon, encode_delivery
from pilot_proto.wire.frames import EncryptedFrame, PunchFrame, decode_frame, encode_frame

EVIL = Endpoint("192.0.2.66", 6666)
PROFILES = pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)


def live(profile: Profile, relay: bool = False) -> tuple[Scenario, SimSink]:
    """A live session; ``relay``: B behind a symmetric NAT and no punching, so the pair ends on RELAY."""
    nat_b = NatType.SYMMETRIC if relay else NatType.FULL_CONE
    sc = Scenario.build(NatType.FULL_CONE, nat_b, NatConfig.for_profile(profile, use_punch=not relay))
    sink = SimSink()
    sc.net.add(sink, EVIL)
    sc.discover()
    sc.connect()
    want = PathState.RELAY if relay else PathState.DIRECT
    assert sc.a.paths.state(2) is want and sc.b.paths.state(1) is want
    assert sc.exchange(b"before") == (True, True)
    return sc, sink


def a_public(sc: Scenario) -> Endpoint:
    ep = sc.a.paths.beacon.endpoint
    assert ep is not None
    return ep


def assert_undisturbed(sc: Scenario, sink: SimSink, want: PathState, tag: bytes) -> None:
    assert sc.a.paths.state(2) is want and sc.b.paths.state(1) is want
    if want is PathState.DIRECT:
        assert sc.a.paths.peers[2].direct == sc.b.paths.beacon.endpoint
    assert sc.exchange(tag) == (True, True)
    for data, _ in sink.received:
        assert not _is_application_data(data)


def _is_application_data(data: bytes) -> bool:
    """Frames may reach the attacker only as punches or probes (pings), never as application data.

    The test knows the pair key, so it can look inside what the attacker got.
    """
    if data[:4] == b"PILP" or data[0] < 0x10:
        return False  # punches, and beacon replies to the attacker's own messages
    frame = decode_frame(data)
    assert isinstance(frame, EncryptedFrame)
    opened = ToyTunnel(2 if frame.sender == 1 else 1).open(data)
    assert opened is not None
    return opened[1] == ToyTunnel.DATA


@pytest.mark.req("NAT-040", "NAT-041", "NAT-046")
@PROFILES
def test_spoofed_punch_commands(profile: Profile) -> None:
    sc, sink = live(profile)
    target = a_public(sc)
    # from the attacker's own address: dropped by the source check
    sc.net.inject(encode_beacon(PunchCommand(EVIL)), EVIL, target)
    sc.net.run_for(0.5)
    assert sc.a.paths.beacon.stats["spoofed"] == 1 and sink.received == []
    # forged beacon source: unsolicited, so at most punch packets (rate-limited) go to the attacker
    for _ in range(20):
        sc.net.inject(encode_beacon(PunchCommand(EVIL)), BEACON_ENDPOINT, target)
    sc.net.run_for(0.5)
    burst = int(sc.a.paths.config.unsolicited_punch_burst)
    assert len(sink.received) == burst * sc.a.paths.config.punch_packets
    assert all(data[:4] == b"PILP" for data, _ in sink.received)
    assert sc.a.paths.peers[2].candidates == []
    assert_undisturbed(sc, sink, PathState.DIRECT, b"after-punch")


@pytest.mark.req("NAT-042", "NAT-024")
@PROFILES
def test_spoofed_relay_delivery(profile: Profile) -> None:
    sc, sink = live(profile)
    target = a_public(sc)
    forged = ToyTunnel(2, key_for=lambda a, b: bytes(32)).seal(1, ToyTunnel.DATA, b"evil")  # wrong key
    for delivery in (encode_beacon(RelayDeliver(2, forged)), encode_delivery(2, forged, profile)):
        sc.net.inject(delivery, BEACON_ENDPOINT, target)  # forged beacon source
        sc.net.inject(delivery, EVIL, target)  # attacker's own source
    sc.net.run_for(0.5)
    assert sc.a.rejected >= 1 and all(body != b"evil" for _, body, _ in sc.a.inbox)
    assert_undisturbed(sc, sink, PathState.DIRECT, b"after-relay")


@pytest.mark.req("NAT-042", "NAT-043")
@PROFILES
def test_replayed_frames_via_relay_or_new_source_do_not_move_the_path(profile: Profile) -> None:
    sc, sink = live(profile)
    target = a_public(sc)
    captured = [d for _, src, dst, d in sc.net.wire if dst == target and d[:4] == b"PILS"]
    assert captured, "the observer saw B's frames to A"
    for frame in captured[-3:]:
        sc.net.inject(encode_delivery(2, frame, profile), BEACON_ENDPOINT, target)  # replay "via relay"
        sc.net.inject(frame, EVIL, target)  # replay from the attacker's address
    sc.net.run_for(0.5)
    assert sc.a.rejected >= 2 * len(captured[-3:])
    assert_undisturbed(sc, sink, PathState.DIRECT, b"after-replay")


@pytest.mark.req("NAT-043", "TUN-026")
@PROFILES
def test_spoofed_pilp_while_direct_and_while_relayed(profile: Profile) -> None:
    sc, sink = live(profile)
    pilp = encode_frame_pilp(2)
    sc.net.inject(pilp, EVIL, a_public(sc))
    sc.net.run_for(0.5)
    assert sc.a.paths.peers[2].candidates == []  # DIRECT: nothing to learn
    assert_undisturbed(sc, sink, PathState.DIRECT, b"after-pilp")

    sc, sink = live(profile, relay=True)
    sc.net.inject(pilp, EVIL, a_public(sc))
    sc.net.run_for(0.5)
    expect = [EVIL] if profile is Profile.DRAFT else []  # go-interop ignores PILP contents (E-NAT-1)
    assert sc.a.paths.peers[2].candidates[: len(expect)] == expect
    sc.net.run_for(70.0)  # the relay->direct probe goes to the candidate too ...
    if profile is Profile.DRAFT:
        assert any(d[:4] == b"PILS" for d, _ in sink.received)
    assert_undisturbed(sc, sink, PathState.RELAY, b"after-pilp-relay")  # ... and moves nothing


@pytest.mark.req("NAT-045", "NAT-041")
@PROFILES
def test_hijacked_beacon_registration_cannot_redirect_a_direct_session(profile: Profile) -> None:
    sc, sink = live(profile)
    # Discover is unauthenticated: the attacker can claim B's node ID at the beacon ...
    sc.net.inject(encode_beacon(Discover(2)), EVIL, BEACON_ENDPOINT)
    sc.net.run_for(0.5)
    assert sc.beacon.lookup(2) == EVIL
    # ... and a new punch from A would now send B's commands to the attacker, but the live path does not move
    sc.a.paths.connect(2, sc.net.clock.now)  # idempotent while DIRECT: no punch request
    sc.net.run_for(1.0)
    assert_undisturbed(sc, sink, PathState.DIRECT, b"after-hijack")


def encode_frame_pilp(sender: int) -> bytes:
    return encode_frame(PunchFrame(sender))

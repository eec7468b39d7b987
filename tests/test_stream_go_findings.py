"""Pin what spec/errata.md E-OBS-1 says our stream does differently from the Go reference on loopback.

Each test drives our endpoint with the exact packets GoB was seen to send or mishandle.
"""

from __future__ import annotations

import pytest

from pilot_proto import Profile
from pilot_proto.errors import Action, ErrorCode
from pilot_proto.sansio import InputRejected
from pilot_proto.stream import State, StreamConfig
from pilot_proto.wire import Addr, Packet, PacketProtocol
from tests.stream_helpers import ACK, FIN, LOCAL, REMOTE, accepted, dialed

PROFILES = [Profile.DRAFT, Profile.GO_INTEROP]


@pytest.mark.req("SES-006", "SES-020", "SES-021")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.value)
def test_fin_ack_to_our_fin_is_answered_with_a_pure_ack_never_a_fin(profile: Profile) -> None:
    """GoB answers every FIN|ACK with a FIN|ACK, so two GoB daemons loop for ever; we must not."""
    ep, peer, cid = dialed(StreamConfig.for_profile(profile))
    ep.close(cid, 0.0)
    (our_fin,) = ep.packets_to_send()
    assert our_fin.flags & FIN
    # The peer acknowledges our FIN and closes in the same packet, then repeats it (as GoB does).
    fin_ack = peer.packet(FIN | ACK, ack=our_fin.seq + 1)
    first = peer.feed(fin_ack, 0.01)
    again = peer.feed(fin_ack, 0.02)
    replies = first + again + peer.advance(1.0)
    assert replies, "the peer's FIN must be acknowledged"
    assert all(p.flags == ACK and not p.payload for p in replies), [p.describe() for p in replies]
    assert all(p.ack == (peer.seq + 1) & 0xFFFFFFFF for p in replies)
    assert ep.connection(cid).state is State.TIME_WAIT


@pytest.mark.req("SES-022")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.value)
def test_simultaneous_close_ends_after_a_bounded_exchange(profile: Profile) -> None:
    """Both sides close at once: a few packets, then quiet (GoB-to-GoB never went quiet)."""
    from pilot_proto.testing.pair import StreamPair

    pair = StreamPair(StreamConfig.for_profile(profile))
    ca, cb = pair.connect()
    pair.send("a", ca, b"x" * 10)
    pair.close("a", ca)
    pair.close("b", cb)
    sent: list[Packet] = []
    pair.observers.append(lambda side, pkt, now: sent.append(pkt))
    pair.run_until(None, max_time=60.0)
    assert len(sent) <= 8, [p.describe() for p in sent]
    assert pair.a.get_timer() is None and pair.b.get_timer() is None


@pytest.mark.req("PKT-025")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.value)
def test_packet_for_another_node_is_dropped_not_answered(profile: Profile) -> None:
    """GoB answered pings addressed to node 999 and to network 7; we drop them."""
    ep, _peer, _cid = accepted(StreamConfig.for_profile(profile))
    for dst in (Addr(LOCAL.network, 999), Addr(7, LOCAL.node)):
        ping = Packet(0, PacketProtocol.CONTROL, REMOTE, dst, 40000, 0, seq=5, payload=b"hi")
        ep.receive_packet(ping, 0.1)
        assert ep.packets_to_send() == []
        (rej,) = ep.events()  # exactly one rejection event with the full error, nothing answered
        assert isinstance(rej, InputRejected) and rej.layer == "stream" and rej.error.code is ErrorCode.BAD_ADDRESS
        assert rej.error.field == "dst" and rej.action is Action.DROP
    assert ep.dropped.get("wrong_destination") == 2


@pytest.mark.req("PKT-008", "SES-040")
@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.value)
def test_ack_going_backwards_is_ignored(profile: Profile) -> None:
    """GoB once sent ack=18 after ack=19; an ACK below snd_una must change nothing and raise nothing."""
    ep, peer, cid = accepted(StreamConfig.for_profile(profile, nodelay=True))
    ep.send(cid, b"0123456789", 0.0)
    (data,) = ep.packets_to_send()
    peer.feed(peer.packet(ACK, ack=data.seq + 10), 0.01)
    conn = ep.connection(cid)
    before = (conn.state, conn.snd_una, conn.snd_nxt, conn.bytes_in_flight, conn.cwnd)
    peer.feed(peer.packet(ACK, ack=data.seq + 9), 0.02)
    assert (conn.state, conn.snd_una, conn.snd_nxt, conn.bytes_in_flight, conn.cwnd) == before
    assert ep.packets_to_send() == []

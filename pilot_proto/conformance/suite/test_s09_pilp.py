"""Draft 7.5, 9.2: PILP punch frames arriving at a node with a live session.

A PILP is unauthenticated: whatever the receiver records from it (draft 7.5: the source address), it must
not crash, answer, or move a live session's path to the sender (NAT-043, erratum E-NAT-1).  Each test keeps a
stream connection open to the echo service, sends PILP frames from the peer and from a stranger (its own
socket, its own node ID, or claiming the peer's), and checks that the session still works and that no
reply went to the stranger.

Safety (erratum E-OBS-4): nothing here is a beacon message (every datagram starts with "PILP", first byte
0x50), and no address appears inside anything sent; the only addresses involved are the 127.0.0.1 sockets
themselves.
"""

from __future__ import annotations

import pytest

from pilot_proto.conformance.harness import Peer, Stream
from pilot_proto.conformance.suite._common import QUIET
from pilot_proto.conformance.verdicts import Inconclusive
from pilot_proto.profile import Profile
from pilot_proto.wire.header import Packet

ECHO = 7


def _pilp(peer: Peer, sender: int) -> bytes:
    """The profile's PILP form (draft: magic + sender ID; go-interop: the bare magic, E-PILP-1)."""
    return b"PILP" + sender.to_bytes(4, "big") if peer.target.profile is Profile.DRAFT else b"PILP"


def _live(peer: Peer) -> tuple[Stream, Packet]:
    """A connection to the echo whose echoed segment we leave unacknowledged, so the target's next frame to the
    peer is its retransmission -- sent on its own timer, before we send anything authenticated again (which
    would re-confirm the peer's address, E-TNL-1)."""
    peer.keyed()
    peer.require_ping()
    s = peer.stream(ECHO)
    s.connect()
    s.send(b"before")
    seg = s.reply(3.0, s.is_data)
    if seg is None or not seg.payload:
        raise Inconclusive("the echo service returned nothing before the PILP was sent")
    return s, seg


def _still_live(peer: Peer, s: Stream, seg: Packet, stranger: Peer | None = None) -> None:
    again = s.reply(6.0, lambda p: p.seq == seg.seq and s.is_data(p))
    if stranger is not None:
        got = stranger.receive(QUIET)
        assert not got, f"after its PILP the target sent {len(got)} datagram(s) of the peer's session to the stranger"
    assert again is not None, "after the PILP the target's retransmission of unacknowledged data never reached the peer"
    s.absorb(again)
    s.ack()
    s.send(b"after")
    assert s.read(5) == b"after", "the live connection no longer echoes after the PILP"
    peer.alive()


@pytest.mark.req("TUN-026", "TUN-025", "TUN-027")
def test_pilp_from_the_peer_keeps_the_session(peer: Peer) -> None:
    peer.keyed()
    peer.require_ping()
    s = peer.stream(ECHO)
    s.connect()
    for frame in (_pilp(peer, peer.node_id), b"PILP", b"PILP" + peer.node_id.to_bytes(4, "big")):
        peer.send_raw(frame)
    assert not peer.receive(QUIET), "the target answered a PILP frame"
    s.send(b"after")
    assert s.read(5) == b"after", "the live connection no longer echoes after the PILP"
    peer.alive()


@pytest.mark.req("NAT-043", "TUN-026", "SES-133")
def test_pilp_from_a_stranger_claiming_the_peer_does_not_move_the_path(make_peer: object) -> None:
    peer: Peer = make_peer()  # type: ignore[operator]
    stranger: Peer = make_peer()  # type: ignore[operator]
    s, seg = _live(peer)
    for frame in (b"PILP" + peer.node_id.to_bytes(4, "big"), b"PILP"):  # the peer's node ID, from another socket
        stranger.send_raw(frame, f"PILP from a stranger socket claiming node {peer.node_id}")
    _still_live(peer, s, seg, stranger)


@pytest.mark.req("NAT-043", "TUN-026")
def test_pilp_from_an_unknown_node_changes_nothing(make_peer: object) -> None:
    peer: Peer = make_peer()  # type: ignore[operator]
    stranger: Peer = make_peer()  # type: ignore[operator]
    peer.keyed()
    peer.require_ping()
    s = peer.stream(ECHO)
    s.connect()
    stranger.send_raw(_pilp(stranger, stranger.node_id))
    stranger.send_raw(b"PILP" + stranger.node_id.to_bytes(4, "big") + bytes(28))  # oversized, still only PILP
    assert not stranger.receive(QUIET), "the target answered a stranger's PILP"
    s.send(b"after")
    assert s.read(5) == b"after", "the live connection no longer echoes after a stranger's PILP"
    peer.alive()

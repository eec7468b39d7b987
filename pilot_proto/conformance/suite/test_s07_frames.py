"""Draft 7: tunnel frames -- magics, sizes, truncations.  Bad frames are dropped silently and change nothing."""

from __future__ import annotations

import pytest

from pilot_proto.conformance.harness import Peer
from pilot_proto.conformance.suite._common import QUIET, answered, keyed_with_ping
from pilot_proto.profile import Profile
from pilot_proto.wire.header import encode_packet


def _silent(peer: Peer) -> bool:
    return not peer.receive(QUIET)


@pytest.mark.req("TUN-009", "TUN-001")
@pytest.mark.parametrize("data", [b"", b"P", b"PIL", b"XXXX" + bytes(36), b"pils" + bytes(36), b"PILZ" + bytes(120)],
                         ids=["empty", "1-byte", "3-bytes", "XXXX", "lowercase-pils", "PILZ"])  # fmt: skip
def test_unknown_or_short_datagram_is_dropped_silently(peer: Peer, data: bytes) -> None:
    keyed_with_ping(peer)
    peer.send_raw(data)
    assert _silent(peer), "the target answered a datagram that is not a tunnel frame"
    peer.alive()


@pytest.mark.req("TUN-004", "TUN-024")
def test_truncated_pilk_gets_no_answer(peer: Peer) -> None:
    frame = peer.kex_frame(peer.new_private(), auth=False)
    assert peer.key_exchange(frame=frame[:39], duration=0.6, retries=0) is None, "a 39-byte PILK was answered"
    assert peer.key_exchange() is not None, "a good PILK after the truncated one was not answered"


@pytest.mark.req("TUN-024")
def test_pilk_with_trailing_bytes(peer: Peer) -> None:
    priv = peer.new_private()
    frame = peer.kex_frame(priv, auth=False) + b"\x00\x01"
    keys = peer.key_exchange(private=priv, frame=frame, duration=0.8, retries=1)
    if peer.target.profile is Profile.DRAFT:
        assert keys is None, "draft: a PILK longer than 40 bytes must be rejected, yet it was answered"
    else:
        assert keys is not None, "go-interop: bytes after a PILK are ignored, yet it was not answered"


@pytest.mark.req("TUN-005", "TUN-023")
def test_truncated_pila_gets_no_answer(make_peer: object) -> None:
    peer = make_peer(trusted=True)  # type: ignore[operator]
    frame = peer.kex_frame(peer.new_private(), auth=True)
    assert peer.key_exchange(frame=frame[:135], duration=0.6, retries=0) is None, "a 135-byte PILA was answered"


@pytest.mark.req("TUN-014", "TUN-003")
@pytest.mark.parametrize("cut", [8, 20, 35], ids=["magic+sender", "no-ciphertext", "35-bytes"])
def test_truncated_pils_is_dropped(peer: Peer, cut: int) -> None:
    keyed_with_ping(peer)
    req = peer.ping_packet()
    frame = peer.seal(encode_packet(req))
    peer.send_raw(frame[:cut])
    assert not answered(peer, req.src_port, req.seq), "a truncated PILS frame was processed"
    peer.alive()


@pytest.mark.req("SEC-005", "TUN-002")
def test_plaintext_refused_once_keyed(peer: Peer) -> None:
    keyed_with_ping(peer)
    req = peer.ping_packet()
    peer.send_raw(b"PILT" + encode_packet(req))
    assert _silent(peer), "the target answered a PILT frame from a peer it shares a tunnel key with"
    peer.alive()


@pytest.mark.req("TUN-026", "TUN-027", "TUN-025")
def test_punch_frame_discarded_silently(peer: Peer) -> None:
    keyed_with_ping(peer)
    frame = b"PILP" + peer.node_id.to_bytes(4, "big") if peer.target.profile is Profile.DRAFT else b"PILP"
    peer.send_raw(frame)
    assert _silent(peer), "the target answered a PILP punch frame"
    peer.alive()


@pytest.mark.req("TUN-012")
def test_pils_without_session_is_dropped(peer: Peer) -> None:
    peer.keyed()
    other = peer.node_id ^ 0x00A5A5A5
    req = peer.ping_packet()._replace()
    frame = peer.seal(encode_packet(req._replace(src=req.src._replace(node=other))), sender=other)
    peer.send_raw(frame)
    assert _silent(peer), "a PILS frame from a sender with no session was answered"


@pytest.mark.req("TUN-007", "MTU-001")
def test_each_datagram_is_one_frame_with_the_draft_overhead(peer: Peer) -> None:
    """Every PILS datagram of the target holds exactly one frame and one packet: it authenticates as a whole
    (a second frame behind it would break the tag) and its length is the inner payload plus 70 bytes (magic 4,
    sender 4, nonce 12, header 34, tag 16)."""
    keyed_with_ping(peer)
    s = peer.stream(7)
    s.connect()
    data = peer.rng.randbytes(6000)  # more than one 4096-byte segment back
    s.send(data[:3000])
    s.send(data[3000:])
    assert s.read(len(data), 6.0) == data, "the echo did not return the data"
    frames = list(peer.inbound)
    assert len(frames) >= 4, f"only {len(frames)} frames to judge"
    undecodable = [i.error for i in frames if i.packet is None]
    assert not undecodable, f"PILS frames of the target whose inner packet does not decode: {undecodable[:3]}"
    wrong = [
        (i.size, len(i.packet.payload)) for i in frames if i.packet is not None and i.size != 70 + len(i.packet.payload)
    ]
    assert not wrong, (
        f"PILS datagrams that are not payload + 70 bytes, i.e. not exactly one packet (size, payload): {wrong[:5]}"
    )
    unopened = [d for d in peer.other if d[:4] == b"PILS"]
    assert not unopened, f"{len(unopened)} PILS datagrams did not authenticate as one whole frame"

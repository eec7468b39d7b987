"""ScriptedPeer against a real NodeDriver on 127.0.0.1: handshake (PILK and PILA), SYN -> SYN-ACK, echo on
port 7, exact recording, and nothing sent that the script did not ask for."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pilot_proto.drivers.udp import BackgroundNode
from pilot_proto.node import Node
from pilot_proto.profile import Profile
from pilot_proto.testing.keys import insecure_test_identity
from pilot_proto.testing.scripted_peer import ScriptedPeer, ack_responder, rejection_code, seq_add
from pilot_proto.tunnel import KeyEstablished
from pilot_proto.wire.address import Addr, SocketAddr
from pilot_proto.wire.frames import EncryptedFrame
from pilot_proto.wire.header import Flags, Packet
from pilot_proto.wire.raw import corrupt_checksum

TARGET, US = 0x202, 0x51
ISN = 1000


@pytest.fixture(params=[Profile.DRAFT, Profile.GO_INTEROP], ids=lambda p: p.value)
def target(request: pytest.FixtureRequest) -> Iterator[BackgroundNode]:
    with BackgroundNode(Node(TARGET, os.urandom, profile=request.param), echo_ports=[7]) as bg:
        yield bg


def _rejections(bg: BackgroundNode) -> list[str]:
    """The error codes of every rejected input the target reported (read on its loop thread)."""
    return bg.call(lambda: sorted(c.value for e in bg.driver.notices if (c := rejection_code(e)) is not None))


def _open_stream(peer: ScriptedPeer) -> Packet:
    peer.send_packet(peer.packet(Flags.SYN, dst_port=7, seq=ISN))
    synack = peer.expect_packet(lambda p: p.flags == Flags.SYN | Flags.ACK, timeout=3.0)
    assert synack is not None, [r.describe() for r in peer.records]
    assert synack.ack == ISN + 1 and synack.src_port == 7 and synack.dst_port == 49152
    peer.ack(synack, seq=ISN + 1)
    return synack


@pytest.mark.req("TUN-012", "SES-002", "SES-004")
def test_pilk_handshake_syn_synack_and_echo(target: BackgroundNode) -> None:
    with ScriptedPeer(US, target.address, profile=target.node.profile) as peer:
        assert peer.handshake(timeout=3.0) == TARGET  # learned from the reply
        synack = _open_stream(peer)
        peer.send_packet(peer.packet(Flags.ACK, dst_port=7, seq=ISN + 1, ack=seq_add(synack.seq, 1), payload=b"ping!"))
        echoed = peer.expect_packet(lambda p: p.payload == b"ping!", timeout=3.0)
        assert echoed is not None and echoed.seq == seq_add(synack.seq, 1)
        # every datagram was recorded, both ways, with increasing timestamps; every inbound PILS was decrypted
        times = [r.time for r in peer.records]
        assert times == sorted(times)
        inbound = [r for r in peer.records if r.direction == "in"]
        assert inbound[0].kind == "PILK" and inbound[0].frame is not None
        pils = [r for r in inbound if isinstance(r.frame, EncryptedFrame)]
        assert pils and all(r.packet is not None and r.error is None for r in pils)
        out = [r for r in peer.records if r.direction == "out"]
        # exactly what the script sent: PILK, SYN, ACK, data -- no automatic ACK of the echo, no re-key
        assert [r.kind for r in out] == ["PILK", "PILS", "PILS", "PILS"]
        assert [r.packet.flags for r in out[1:] if r.packet is not None] == [Flags.SYN, Flags.ACK, Flags.ACK]
    assert _rejections(target) == []


@pytest.mark.req("TUN-018", "TUN-019", "TUN-020", "SEC-011")
def test_pila_handshake_learns_and_verifies_the_target_key() -> None:
    ours, theirs = insecure_test_identity(US), insecure_test_identity(TARGET)
    node = Node(TARGET, os.urandom, identity=theirs, peer_keys={US: ours.public_bytes})
    with BackgroundNode(node, echo_ports=[7]) as bg, ScriptedPeer(US, bg.address, identity=ours) as peer:
        assert peer.handshake(timeout=3.0) == TARGET
        assert peer.target_key == theirs.public_bytes
        assert [r.kind for r in peer.records] == ["PILA", "PILA"]
        _open_stream(peer)
        keys = bg.call(lambda: [(e.peer, e.authenticated) for e in bg.driver.notices if isinstance(e, KeyEstablished)])
        assert keys == [(US, True)]


@pytest.mark.req("PKT-010", "CONS-016")
def test_malformed_and_replayed_frames_are_refused_by_the_target(target: BackgroundNode) -> None:
    with ScriptedPeer(US, target.address, profile=target.node.profile) as peer:
        peer.handshake(timeout=3.0)
        syn = peer.packet(Flags.SYN, dst_port=7, seq=ISN)
        sent = peer.send_packet(syn)
        assert peer.expect_packet(lambda p: p.flags == Flags.SYN | Flags.ACK, timeout=3.0) is not None
        peer.send_raw(sent.data)  # the same PILS again: a replay
        peer.send_packet(corrupt_checksum(syn.encode()))  # a fresh counter, but a bad inner CRC
        forged = bytearray(peer.seal(syn.encode()))
        forged[-1] ^= 1  # a tampered tag
        peer.send_raw(bytes(forged))
        quiet = peer.listen(0.3)
        assert not [r for r in quiet if r.packet is not None and r.packet.flags & Flags.SYN]
    assert _rejections(target) == ["auth_failed", "bad_checksum", "replay"]


def test_nothing_is_answered_unless_a_responder_is_set(target: BackgroundNode) -> None:
    with ScriptedPeer(US, target.address, profile=target.node.profile) as peer:
        peer.handshake(timeout=3.0)
        peer.responder = ack_responder  # opt in: ACK SYN-ACKs and data
        peer.send_packet(peer.packet(Flags.SYN, dst_port=7, seq=ISN))
        synack = peer.expect_packet(lambda p: p.flags == Flags.SYN | Flags.ACK, timeout=3.0)
        assert synack is not None
        acks = [
            r for r in peer.records if r.direction == "out" and r.packet is not None and r.packet.flags == Flags.ACK
        ]
        assert len(acks) == 1 and acks[0].packet is not None and acks[0].packet.ack == seq_add(synack.seq, 1)


def test_target_host_must_be_an_ip_literal() -> None:
    with pytest.raises(ValueError, match="IP literal"):
        ScriptedPeer(US, ("localhost", 9))


@pytest.mark.req("NONCE-005")
def test_a_second_handshake_is_a_rekey_and_the_stream_carries_on(target: BackgroundNode) -> None:
    with ScriptedPeer(US, target.address, profile=target.node.profile) as peer:
        peer.handshake(timeout=3.0)
        first = peer.session_key
        synack = _open_stream(peer)
        assert peer.rekey(timeout=3.0) == TARGET
        assert peer.session_key is not None and peer.session_key != first
        peer.send_packet(peer.packet(Flags.ACK, dst_port=7, seq=ISN + 1, ack=seq_add(synack.seq, 1), payload=b"again"))
        assert peer.expect_packet(lambda p: p.payload == b"again", timeout=3.0) is not None
    assert _rejections(target) == []


@pytest.mark.req("SES-002")
def test_dialer_mode_judges_the_initiator_side() -> None:
    """The node dials us: we answer its key exchange, see its SYN, answer SYN-ACK and it connects."""
    with ScriptedPeer(US, None) as peer, BackgroundNode(Node(TARGET, os.urandom)) as bg:
        bg.call(bg.node.add_peer, US, peer.address)
        cid = bg.call(bg.driver.dial, SocketAddr(Addr(0, US), 7))
        assert peer.accept_handshake(timeout=3.0) == TARGET
        assert peer.target == bg.address
        syn = peer.expect_packet(lambda p: p.flags == Flags.SYN, timeout=3.0)
        assert syn is not None and syn.dst_port == 7
        peer.send_packet(
            Packet(
                int(Flags.SYN | Flags.ACK),
                syn.protocol,
                syn.dst,
                syn.src,
                7,
                syn.src_port,
                900,
                seq_add(syn.seq, 1),
                512,
            )
        )
        ack = peer.expect_packet(lambda p: p.flags == Flags.ACK and p.ack == 901, timeout=3.0)
        connected = bg.call(lambda: bg.driver.conns[cid].connected)
    assert ack is not None and connected
    assert [r.kind for r in peer.records][:2] == ["PILK", "PILK"]  # theirs, then our answer


@pytest.mark.req("TUN-020")
def test_a_given_target_key_is_enforced_on_the_reply() -> None:
    ours, theirs = insecure_test_identity(US), insecure_test_identity(TARGET)
    node = Node(TARGET, os.urandom, identity=theirs, peer_keys={US: ours.public_bytes})
    with BackgroundNode(node) as bg:
        wrong = insecure_test_identity("someone else").public_bytes
        with ScriptedPeer(US, bg.address, identity=ours, target_key=wrong) as peer:
            with pytest.raises(TimeoutError):
                peer.handshake(timeout=0.5, retry=0.2)
            replies = [r for r in peer.records if r.direction == "in"]
        assert replies and all(r.error is not None and r.error.code.value == "identity_mismatch" for r in replies)
        assert peer.sessions == []
        with ScriptedPeer(US, bg.address, identity=ours, target_key=theirs.public_bytes) as peer:
            assert peer.handshake(timeout=3.0) == TARGET

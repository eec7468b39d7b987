"""ScriptedPeer and the tap against the Go reference daemon on 127.0.0.1 (skipped without PILOT_GO_BIN).

Proves the harness hooks are not only consistent with our own node: a scripted PILA handshake with the
Go daemon learns its node ID, verifies its Ed25519 key, pings port 0 and echoes through port 7, and the
capture of that run dissects with pilot_proto.scapy.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "interop"))
from _go import GoNet, go_network, register

import pilot_proto.scapy as ps
from pilot_proto.profile import Profile
from pilot_proto.testing.keys import insecure_test_identity
from pilot_proto.testing.scripted_peer import ScriptedPeer, seq_add
from pilot_proto.testing.tap import Tap
from pilot_proto.wire.header import Flags, PacketProtocol


@pytest.fixture(scope="module")
def go_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GoNet]:
    with go_network(tmp_path_factory.mktemp("go-hooks"), lifetime=60) as net:
        yield net


@pytest.mark.req("TUN-018", "TUN-019", "SES-002")
def test_scripted_pila_peer_against_the_go_daemon(go_net: GoNet, tmp_path: Path) -> None:
    ident = insecure_test_identity("hooks-go-peer")
    tap = Tap(pcap=tmp_path / "go.pcap")
    with ScriptedPeer(1, go_net.daemon, profile=Profile.GO_INTEROP, identity=ident, tap=tap) as peer:
        me = register(go_net, ident, udp_port=peer.address[1])
        peer.assign_node_id(me)
        assert peer.handshake(timeout=5.0) == go_net.node_id
        assert peer.target_key == go_net.ed25519  # the key it signed with is the one the registry has
        ping = peer.packet(0, protocol=PacketProtocol.CONTROL, dst_port=0, src_port=4242, seq=77, payload=b"go?")
        peer.send_packet(ping)
        pong = peer.expect_packet(lambda p: p.dst_port == 4242, timeout=5.0)
        assert pong is not None and pong.payload == b"go?" and pong.ack == 78
        peer.send_packet(peer.packet(Flags.SYN, dst_port=7, seq=1000))
        synack = peer.expect_packet(lambda p: bool(p.flags & Flags.SYN) and bool(p.flags & Flags.ACK), timeout=5.0)
        assert synack is not None and synack.ack == 1001
        their = seq_add(synack.seq, 1)
        peer.ack(synack, seq=1001)
        peer.send_packet(peer.packet(Flags.ACK, dst_port=7, seq=1001, ack=their, payload=b"hello go"))
        echoed = peer.expect_packet(lambda p: p.payload == b"hello go", timeout=5.0)
        assert echoed is not None
        peer.send_packet(peer.packet(Flags.RST, dst_port=7, seq=1009))
    tap.close()
    kinds = [type(layer).__name__ for _, layer in ps.read_pcap(tmp_path / "go.pcap")]
    assert kinds[:2] == ["PILA", "PILA"] and "PILS" in kinds

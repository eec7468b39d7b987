"""The tap (ring, JSON-lines wire log, pcap) on a NodeDriver and on a ScriptedPeer, and the driver's impairment
hook, over real UDP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.utils import rdpcap

from pilot_proto.drivers.udp import BackgroundNode, Impairment
from pilot_proto.node import Node
from pilot_proto.testing.link import LinkConfig
from pilot_proto.testing.scripted_peer import ScriptedPeer
from pilot_proto.testing.tap import Tap, describe
from pilot_proto.tunnel.dangerous import KeyLog
from pilot_proto.wire.header import Flags, PacketProtocol

TARGET, US = 0x303, 0x61


def _echo_once(peer: ScriptedPeer) -> None:
    peer.handshake(timeout=3.0)
    peer.send_packet(peer.packet(Flags.SYN, dst_port=7, seq=10))
    synack = peer.expect_packet(lambda p: p.flags == Flags.SYN | Flags.ACK, timeout=3.0)
    assert synack is not None
    peer.ack(synack, seq=11)
    peer.send_packet(peer.packet(Flags.ACK, dst_port=7, seq=11, ack=synack.seq + 1, payload=b"tapped"))
    assert peer.expect_packet(lambda p: p.payload == b"tapped", timeout=3.0) is not None


def test_node_tap_and_peer_tap_see_the_same_datagrams(tmp_path: Path) -> None:
    log, pcap = tmp_path / "node.jsonl", tmp_path / "node.pcap"
    node_tap = Tap(wire_log=log, pcap=pcap)
    peer_tap = Tap(ring_size=64)
    with BackgroundNode(Node(TARGET, os.urandom), echo_ports=[7], tap=node_tap) as bg:
        with ScriptedPeer(US, bg.address, tap=peer_tap) as peer:
            _echo_once(peer)
            peer.listen(0.1)  # let the node's last datagrams land
        bg.call(node_tap.close)
    # loopback loses nothing: what one side sent is what the other received, in order, byte for byte
    assert [e.data for e in peer_tap.entries("out")] == [e.data for e in node_tap.entries("in")]
    assert [e.data for e in node_tap.entries("out")] == [e.data for e in peer_tap.entries("in")]
    assert node_tap.counts["in"] >= 4 and node_tap.counts["out"] >= 3
    assert all(e.local == bg.address and e.remote == peer.address for e in node_tap.ring)

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == node_tap.counts["in"] + node_tap.counts["out"]
    assert [line["hex"] for line in lines] == [e.data.hex() for e in node_tap.ring]
    assert lines[0]["dir"] == "in" and lines[0]["decoded"]["kind"] == "PILK" and lines[0]["decoded"]["sender"] == US
    assert {line["decoded"]["kind"] for line in lines} == {"PILK", "PILS"}
    assert all(line["decoded"]["sender"] in (US, TARGET) for line in lines)

    frames = rdpcap(str(pcap))
    assert len(frames) == len(lines)
    for frame, entry in zip(frames, node_tap.ring, strict=True):
        assert bytes(frame[UDP].payload) == entry.data
        assert (frame[IP].src, frame[UDP].sport) == entry.src and (frame[IP].dst, frame[UDP].dport) == entry.dst
        assert abs(float(frame.time) - entry.time) < 1e-5


def test_tap_ring_is_bounded_and_counts_everything() -> None:
    ticks = iter(range(100))
    tap = Tap(ring_size=3, clock=lambda: float(next(ticks)))
    for i in range(10):
        tap.record("out", ("127.0.0.1", 1), ("127.0.0.1", 2), bytes([0x50 + i % 2]) * 40)
    assert len(tap.ring) == 3 and tap.counts == {"in": 0, "out": 10}
    assert [e.time for e in tap.ring] == [7.0, 8.0, 9.0]


def test_describe_reads_every_kind_without_keys() -> None:
    assert describe(b"\x01\x00\x00")["kind"] == "beacon"
    assert describe(b"PILX....")["error"] == "bad_magic"
    assert describe(b"PILP\x00\x00\x00\x05") == {"kind": "PILP", "sender": 5}
    assert describe(b"PILK" + (9).to_bytes(4, "big") + bytes(range(32)))["x25519"] == bytes(range(32)).hex()


@pytest.mark.parametrize("side", ["outbound", "inbound"])
def test_total_loss_on_either_side_silences_the_node(side: str) -> None:
    imp = Impairment(**{side: LinkConfig(loss=1.0)}, rng=random.Random(7))
    with BackgroundNode(Node(TARGET, os.urandom), impairment=imp) as bg, ScriptedPeer(US, bg.address) as peer:
        with pytest.raises(TimeoutError):
            peer.handshake(timeout=0.4, retry=0.1)
        stats = bg.call(lambda: bg.driver.impairment_stats)
        received = bg.call(lambda: bg.driver.datagrams_received)
    assert not [r for r in peer.records if r.direction == "in"]
    assert stats[side].lost == stats[side].sent >= 1
    if side == "inbound":
        assert received == 0  # the node never saw the offers
    else:
        assert received >= 2  # it saw them and answered, the answers were lost


def test_delay_and_duplication_are_applied_to_what_the_node_sends() -> None:
    imp = Impairment(outbound=LinkConfig(delay=0.15, duplicate=1.0), rng=random.Random(1))
    with BackgroundNode(Node(TARGET, os.urandom), impairment=imp) as bg, ScriptedPeer(US, bg.address) as peer:
        peer.handshake(timeout=3.0, retry=2.0)
        peer.listen(0.3)
        sent = bg.call(lambda: bg.driver.datagrams_sent)
    offer = next(r for r in peer.records if r.direction == "out")
    replies = [r for r in peer.records if r.direction == "in"]
    assert len(replies) == 2 and replies[0].data == replies[1].data  # duplicated
    assert replies[0].time - offer.time >= 0.15  # delayed by at least the configured delay
    assert sent == 2


def test_a_key_log_lets_the_wire_log_and_a_later_reader_decrypt_pils(tmp_path: Path) -> None:
    path = tmp_path / "keys.log"
    keys = KeyLog(str(path))
    tap = Tap(wire_log=tmp_path / "wire.jsonl", keylog=keys)
    with BackgroundNode(Node(TARGET, os.urandom), echo_ports=[7], tap=tap) as bg:
        with ScriptedPeer(US, bg.address, keylog=keys) as peer:
            _echo_once(peer)
            peer.rekey(timeout=3.0)  # a second session: a second key line
            peer.send_packet(peer.packet(Flags.ACK, dst_port=7, seq=17, payload=b"after rekey"))
            peer.listen(0.1)
        bg.call(tap.close)
    text = path.read_text()
    assert text.splitlines()[0].startswith("# pilot-proto key log v1") and text.count("\nPILS ") == 2
    pils = [json.loads(line)["decoded"] for line in (tmp_path / "wire.jsonl").read_text().splitlines()]
    pils = [d for d in pils if d["kind"] == "PILS"]
    # live: frames sealed before the peer logged their key (the node may use a new key first) stay sealed
    opened = [d for d in pils if "packet" in d]
    assert len(opened) >= len(pils) - 2 and any(d["packet"]["flags"] == Flags.SYN for d in opened)
    # offline: a fresh reader of the file opens every captured PILS, and nothing without the file
    offline = KeyLog.load(str(path))
    captured = [e.data for e in tap.ring if e.data[:4] == b"PILS"]
    assert all(offline.open_pils(d) is not None for d in captured)
    assert all(KeyLog().open_pils(d) is None for d in captured)


def _ping_run(seed: int, config: LinkConfig, count: int = 20) -> list[int]:
    """Key first, then impair the node's outbound side and send ``count`` pings; the reply seqs in arrival order."""
    with BackgroundNode(Node(TARGET, os.urandom)) as bg, ScriptedPeer(US, bg.address) as peer:
        peer.handshake(timeout=3.0)
        bg.call(bg.driver.set_impairment, Impairment(outbound=config, rng=random.Random(seed)))
        for seq in range(count):
            peer.send_packet(peer.packet(0, protocol=PacketProtocol.CONTROL, dst_port=0, src_port=900, seq=seq))
        got = [r.packet.seq for r in peer.listen(0.3) if r.packet is not None and r.packet.dst_port == 900]
        stats = bg.call(lambda: bg.driver.impairment_stats["outbound"])
    assert stats.sent == count
    return got


def test_seeded_loss_is_repeatable_over_real_udp() -> None:
    first, second = _ping_run(11, LinkConfig(loss=0.5)), _ping_run(11, LinkConfig(loss=0.5))
    assert first == second and 0 < len(first) < 20  # the same replies were lost both times
    assert _ping_run(12, LinkConfig(loss=0.5)) != first  # and another seed loses others


def test_reordering_on_the_node_side() -> None:
    got = _ping_run(3, LinkConfig(reorder=0.5, reorder_delay=0.05))
    assert sorted(got) == list(range(20)) and got != sorted(got)

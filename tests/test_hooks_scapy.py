"""pilot_proto.scapy: a layer for every frame and beacon message, UDP binding, and dissection of a pcap written
by the tap over real UDP on 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from scapy.layers.inet import UDP
from scapy.packet import Raw
from scapy.utils import rdpcap

import pilot_proto.scapy as ps
from pilot_proto.drivers.udp import BackgroundNode
from pilot_proto.errors import DecodeError, ErrorCode
from pilot_proto.node import Node
from pilot_proto.testing.scripted_peer import ScriptedPeer
from pilot_proto.testing.tap import Tap
from pilot_proto.wire import beacon as b
from pilot_proto.wire.frames import decode_frame
from pilot_proto.wire.header import Flags, decode_packet

TARGET, US = 0x404, 0x71

MESSAGES: list[b.BeaconMessage] = [
    b.Discover(5),
    b.DiscoverReply(b.Endpoint("203.0.113.7", 4000)),
    b.DiscoverReply(b.Endpoint("2001:db8::7", 4000)),
    b.PunchRequest(1, 2),
    b.PunchCommand(b.Endpoint("198.51.100.1", 5)),
    b.Relay(1, 2, b"PILP\x00\x00\x00\x01"),
    b.RelayDeliver(3, b"PILK" + bytes(36)),
    b.Sync(9, (1, 2, 3)),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_beacon_message_dissects_and_rebuilds_byte_for_byte(msg: b.BeaconMessage) -> None:
    raw = b.encode_beacon(msg)
    layer = ps.dissect(raw)
    assert type(layer) is ps.BEACON_LAYERS[raw[0]]
    assert bytes(layer) == raw
    for name, value in msg._asdict().items():
        if name == "endpoint":
            ip = layer.ip if layer.ip_len == 4 else layer.ip6
            assert (ip, layer.port) == (value.host, value.port)
        elif name == "payload":
            assert bytes(layer.payload) == value and not isinstance(layer.payload, Raw)
        elif name == "nodes":
            assert tuple(layer.nodes) == value
        else:
            assert getattr(layer, name) == value


def test_layers_build_what_the_codecs_decode() -> None:
    assert b.decode_beacon(bytes(ps.BeaconSync(beacon=7, nodes=[4, 5]))) == b.Sync(7, (4, 5))
    assert b.decode_beacon(bytes(ps.BeaconPunchRequest(requester=1, target=2))) == b.PunchRequest(1, 2)
    # a malformed PILT crafted with the layers: the inner header's CRC is wrong on purpose
    frame = bytes(ps.PILT() / ps.Pilot(flags=1, dst_port=7, checksum=0xDEADBEEF))
    inner = decode_frame(frame)
    with pytest.raises(DecodeError) as exc:
        decode_packet(inner.packet)  # type: ignore[union-attr]
    assert exc.value.code is ErrorCode.BAD_CHECKSUM
    assert ps.looks_like_pilot(b"PILS") and not ps.looks_like_pilot(b"GET /") and not ps.looks_like_pilot(b"\x0f")


def test_a_tap_pcap_dissects_into_pilot_layers(tmp_path: Path) -> None:
    pcap = tmp_path / "run.pcap"
    tap = Tap(pcap=pcap)
    with BackgroundNode(Node(TARGET, os.urandom), echo_ports=[7], tap=tap) as bg:
        with ScriptedPeer(US, bg.address) as peer:
            peer.handshake(timeout=3.0)
            syn = peer.packet(Flags.SYN, dst_port=7, seq=1)
            peer.send_packet(syn)
            assert peer.expect_packet(lambda p: p.has(Flags.SYN), timeout=3.0) is not None
            peer.send_packet(syn, encrypted=False)  # PILT (refused: we share a key), still on the wire
            peer.listen(0.1)
        port = bg.address[1]
        bg.call(tap.close)
    layers = list(ps.read_pcap(pcap))
    kinds = [type(layer).__name__ for _, layer in layers]
    assert kinds[:2] == ["PILK", "PILK"] and kinds.count("PILT") == 1 and kinds.count("PILS") >= 2
    assert len(layers) == tap.counts["in"] + tap.counts["out"]
    assert {layer.sender for _, layer in layers if layer.haslayer(ps.PILK)} == {US, TARGET}
    pilt = next(layer for _, layer in layers if isinstance(layer, ps.PILT))
    assert pilt[ps.Pilot].dst_port == 7 and pilt[ps.Pilot].src_node == US and pilt[ps.Pilot].seq == 1
    # plain scapy after binding the node's port: UDP / PILK ... straight from rdpcap
    ps.bind_pilot_port(port)
    first = rdpcap(str(pcap))[0]
    assert first[UDP].dport == port and first.haslayer(ps.PILK) and first[ps.PILK].sender == US


@pytest.mark.req("SVC-010", "SVC-026")
def test_service_message_layers_match_the_codecs() -> None:
    from pilot_proto.wire import dataexchange as dx
    from pilot_proto.wire import eventstream as es

    raw = dx.encode_data_frame(dx.TextFrame("héllo")) + dx.encode_data_frame(dx.BinaryFrame(b"\x00\x01"))
    first = ps.DataExchangeFrame(raw)
    assert first.type == dx.FrameType.TEXT and first.data == "héllo".encode() and first.length == 6
    second = ps.DataExchangeFrame(raw[8 + first.length :])
    assert second.type == dx.FrameType.BINARY and second.data == b"\x00\x01"
    assert bytes(ps.DataExchangeFrame(type=2, data=b"xyz")) == dx.encode_data_frame(dx.BinaryFrame(b"xyz"))
    rec = es.encode_record("news", b"payload")
    layer = ps.EventRecord(rec)
    assert (layer.topic, layer.body) == (b"news", b"payload") and bytes(layer) == rec
    assert es.decode_record(bytes(ps.EventRecord(topic=b"t", body=b"p"))) == es.EventRecord("t", b"p")
